from __future__ import annotations

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import attestation as attest
from protocol.errors import AttestationError, ConfigError

KEY = Ed25519PrivateKey.generate()
STATEMENT = attest.Attestation(
    nameplate="482",
    consultant="Anna Nowak",
    ticket_id="HD-1042",
    ticket_title="VPN",
    org="Example",
    expires_at=1000.0,
)


def test_relay_signature_checks_with_the_pinned_key() -> None:
    blob = attest.sign(STATEMENT, KEY)
    assert attest.verify(blob, KEY.public_key(), nameplate="482", now=999.0) == STATEMENT


def test_signature_by_another_relay_is_refused() -> None:
    blob = attest.sign(STATEMENT, Ed25519PrivateKey.generate())
    with pytest.raises(AttestationError, match="not signed"):
        attest.verify(blob, KEY.public_key(), nameplate="482", now=0.0)


def test_attestation_for_another_nameplate_is_refused() -> None:
    with pytest.raises(AttestationError, match="another nameplate"):
        attest.verify(attest.sign(STATEMENT, KEY), KEY.public_key(), nameplate="483", now=0.0)


def test_expired_attestation_is_refused() -> None:
    with pytest.raises(AttestationError, match="expired"):
        attest.verify(attest.sign(STATEMENT, KEY), KEY.public_key(), nameplate="482", now=1001.0)


def test_edited_name_breaks_the_signature() -> None:
    payload, signature = msgpack.unpackb(attest.sign(STATEMENT, KEY))
    edited = payload.replace(b"Anna Nowak", b"Anna Nowik")
    with pytest.raises(AttestationError, match="not signed"):
        attest.verify(msgpack.packb([edited, signature]), KEY.public_key(), nameplate="482", now=0)


@pytest.mark.parametrize(
    "blob", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb([b"x"]), b"\x00" * 3000]
)
def test_malformed_attestation_is_an_attestation_error(blob: bytes) -> None:
    with pytest.raises(AttestationError):
        attest.verify(blob, KEY.public_key(), nameplate="482", now=0.0)


def test_signed_but_wrong_shape_is_refused() -> None:
    payload = msgpack.packb(["zgoda/1/attestation", "482", 1, 2, 3, 4, 5.0])
    blob = msgpack.packb([payload, KEY.sign(payload)])
    with pytest.raises(AttestationError, match="malformed"):
        attest.verify(blob, KEY.public_key(), nameplate="482", now=0.0)
    payload = msgpack.packb(["zgoda/9/attestation", "482"])
    blob = msgpack.packb([payload, KEY.sign(payload)])
    with pytest.raises(AttestationError, match="version"):
        attest.verify(blob, KEY.public_key(), nameplate="482", now=0.0)


def test_public_key_text_round_trips_and_bad_text_is_a_config_error() -> None:
    text = attest.public_key_text(KEY.public_key())
    blob = attest.sign(STATEMENT, KEY)
    assert (
        attest.verify(blob, attest.load_public_key(text), nameplate="482", now=0).org == "Example"
    )
    with pytest.raises(ConfigError, match="base64"):
        attest.load_public_key("not base64!")
    with pytest.raises(ConfigError, match="32 bytes"):
        attest.load_public_key("AAAA")
