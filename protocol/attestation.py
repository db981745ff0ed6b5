"""The relay's signed statement of who asks and for which ticket (DESIGN §2).

The relay signs it with its Ed25519 key when it allocates a nameplate; the
console forwards it inside the sealed SessionRequest; the agent checks it
against the relay key pinned in its installed configuration and shows the
consultant's name only if it checks, is for this nameplate, matches what the
request says, and has not expired.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import AttestationError, ConfigError
from protocol.limits import PROTOCOL_VERSION

_CONTEXT = f"zgoda/{PROTOCOL_VERSION}/attestation"
MAX_ATTESTATION_SIZE = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class Attestation:
    nameplate: str
    consultant: str
    ticket_id: str
    ticket_title: str
    org: str
    expires_at: float

    def _payload(self) -> bytes:
        return msgpack.packb(  # type: ignore[no-any-return]
            [
                _CONTEXT,
                self.nameplate,
                self.consultant,
                self.ticket_id,
                self.ticket_title,
                self.org,
                float(self.expires_at),
            ],
            use_bin_type=True,
        )


def sign(attestation: Attestation, key: Ed25519PrivateKey) -> bytes:
    payload = attestation._payload()
    return msgpack.packb([payload, key.sign(payload)], use_bin_type=True)  # type: ignore[no-any-return]


def verify(blob: bytes, key: Ed25519PublicKey, *, nameplate: str, now: float) -> Attestation:
    """Check a signed attestation and return what it states.

    Raises:
        AttestationError: malformed, not signed by `key`, for another nameplate, or expired.
    """
    if len(blob) > MAX_ATTESTATION_SIZE:
        raise AttestationError("attestation is too large")
    try:
        payload, signature = msgpack.unpackb(blob, raw=False, max_map_len=0, max_ext_len=0)
        context, *fields = msgpack.unpackb(payload, raw=False, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData):
        raise AttestationError("attestation is malformed") from None
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise AttestationError("attestation is malformed")
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise AttestationError("attestation is not signed by this organisation's relay") from None
    if context != _CONTEXT or len(fields) != 6:
        raise AttestationError("attestation is for another protocol version")
    names = ("nameplate", "consultant", "ticket_id", "ticket_title", "org", "expires_at")
    kinds = (str, str, str, str, str, float)
    if not all(isinstance(v, k) for v, k in zip(fields, kinds, strict=True)):
        raise AttestationError("attestation is malformed")
    attestation = Attestation(**dict(zip(names, fields, strict=True)))
    if attestation.nameplate != nameplate:
        raise AttestationError("attestation is for another nameplate")
    if attestation.expires_at < now:
        raise AttestationError("attestation has expired")
    return attestation


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form an admin pastes into the MSI / agent config: base64 of the raw 32 bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse a pinned relay key. Raises ConfigError with a message an admin can act on."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("relay public key is not base64") from None
    if len(raw) != 32:
        raise ConfigError("relay public key must be 32 bytes (base64 of a raw Ed25519 key)")
    return Ed25519PublicKey.from_public_bytes(raw)
