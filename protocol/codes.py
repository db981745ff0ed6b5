"""The phone code: public nameplate + locally generated secret (DESIGN §2).

The consultant reads `482-913-775` over the phone: `482` is the nameplate the
relay allocated (it routes the two ends), `913775` is the secret the console drew
locally; the secret never reaches the relay and is the PAKE password.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from protocol.errors import CodeCharacterError, CodeLengthError
from protocol.limits import NAMEPLATE_DIGITS, SECRET_DIGITS

CODE_DIGITS = NAMEPLATE_DIGITS + SECRET_DIGITS

# What people type between digit groups when they copy a code from a phone call,
# an e-mail or a chat: spaces (also no-break), dashes of every kind, dots.
_SEPARATORS = frozenset(" \t\u00a0\u202f-\u2010\u2011\u2012\u2013\u2014\u2212._/")


@dataclass(frozen=True, slots=True)
class PhoneCode:
    nameplate: str
    secret: str

    def __post_init__(self) -> None:
        _check_digits(self.nameplate, NAMEPLATE_DIGITS, "nameplate")
        _check_digits(self.secret, SECRET_DIGITS, "secret")

    def __str__(self) -> str:
        """The code grouped for reading aloud: `482-913-775`."""
        s = self.secret
        return f"{self.nameplate}-{s[:3]}-{s[3:]}"

    @property
    def password(self) -> bytes:
        """The PAKE password: the secret digits only."""
        return self.secret.encode("ascii")


def _check_digits(value: str, length: int, what: str) -> None:
    if len(value) != length or not (value.isascii() and value.isdigit()):
        raise CodeCharacterError(f"The {what} must be {length} digits.")


def new_secret() -> str:
    """A fresh 6-digit secret from the OS's CSPRNG."""
    return f"{secrets.randbelow(10**SECRET_DIGITS):0{SECRET_DIGITS}d}"


def new_nameplate() -> str:
    """A random nameplate; the relay draws these and checks they are free."""
    return f"{secrets.randbelow(10**NAMEPLATE_DIGITS):0{NAMEPLATE_DIGITS}d}"


def parse_code(text: str) -> PhoneCode:
    """Parse a code as a person typed or pasted it.

    Accepts `482-913-775`, `482 913 775`, `482913775`, `482-913775`, with
    surrounding spaces and any kind of dash. Non-ASCII digits (Arabic-Indic and
    the like) are refused rather than silently normalised.

    Raises:
        CodeCharacterError: a character that is neither a digit nor a separator.
        CodeLengthError: too few or too many digits.
    """
    digits: list[str] = []
    for ch in text.strip():
        if ch in _SEPARATORS:
            continue
        if not ("0" <= ch <= "9"):
            raise CodeCharacterError(
                f"The code has only digits, for example 482-913-775. Remove {ch!r} and try again."
            )
        digits.append(ch)
    if not digits:
        raise CodeLengthError("Type the 9-digit code the consultant reads to you.")
    if len(digits) != CODE_DIGITS:
        raise CodeLengthError(
            f"The code has {CODE_DIGITS} digits; you typed {len(digits)}. "
            "Check it with the consultant."
        )
    joined = "".join(digits)
    return PhoneCode(nameplate=joined[:NAMEPLATE_DIGITS], secret=joined[NAMEPLATE_DIGITS:])
