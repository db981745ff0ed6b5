"""Consultant credentials: argon2id password hashes, bearer tokens and TOTP."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import urllib.parse

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.totp import TOTP

# OWASP's argon2id recommendation (m=19 MiB, t=2, p=1): ~50-150 ms on a small
# VM, so a login stays quick while an offline guess costs the same. The hash
# string records its parameters: raising them later keeps old hashes valid.
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)

TOTP_DIGITS = 6
TOTP_STEP_SECONDS = 30
TOTP_DRIFT_STEPS = 1
"""A code from the previous or next 30-second step is accepted: phone clocks drift."""
TOTP_SECRET_BYTES = 20  # RFC 4226 recommends 160 bits
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """An argon2id hash. Raises ValueError for a password that is too short or too long."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches; never raises for a wrong or malformed one."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def burn_verify_time(password: str) -> None:
    """Spend a verification's time for an unknown user, so timing tells nothing."""
    verify_password(_dummy_hash(), password)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the store keeps instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_totp_secret() -> bytes:
    return secrets.token_bytes(TOTP_SECRET_BYTES)


def _totp(secret: bytes) -> TOTP:
    # SHA-1 is what RFC 6238 and every authenticator app use; HMAC-SHA-1 is not broken
    sha1 = hashes.SHA1()  # noqa: S303
    return TOTP(secret, TOTP_DIGITS, sha1, TOTP_STEP_SECONDS, enforce_key_length=False)


def totp_code(secret: bytes, now: float) -> str:
    """The current code, as an authenticator app shows it."""
    return _totp(secret).generate(int(now)).decode()


def check_totp(secret: bytes, code: str, now: float, last_step: int) -> int | None:
    """The time step `code` belongs to, or None when it is wrong or already used.

    Refusing a step at or before `last_step` stops a code seen over a shoulder
    from being used a second time.
    """
    if not (len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()):
        return None
    totp = _totp(secret)
    current = int(now) // TOTP_STEP_SECONDS
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        expected = totp.generate(step * TOTP_STEP_SECONDS)
        if hmac.compare_digest(expected, code.encode()) and step > last_step:
            return step
    return None


def totp_uri(secret: bytes, username: str, issuer: str) -> str:
    """An otpauth:// URI for authenticator apps (QR code or manual entry)."""
    label = urllib.parse.quote(f"{issuer}:{username}")
    query = urllib.parse.urlencode(
        {
            "secret": base64.b32encode(secret).decode().rstrip("="),
            "issuer": issuer,
            "digits": TOTP_DIGITS,
            "period": TOTP_STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"
