"""Fuzz `protocol.attestation.verify` with arbitrary blobs and with mutations of a
genuine one: any input gives an Attestation (only for the genuine blob) or
AttestationError."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol.attestation import Attestation, sign, verify
    from protocol.errors import AttestationError

from bench.fuzz.runner import fuzz_main

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
GENUINE = sign(
    Attestation(
        nameplate="482",
        consultant="Anna Nowak",
        ticket_id="HD-1001",
        ticket_title="Outlook does not start",
        org="Example Sp. z o.o.",
        expires_at=2_000_000_000.0,
    ),
    KEY,
)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        blob = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:  # flip bytes of the genuine blob: the signature must catch every change
        spoilt = bytearray(GENUINE)
        for _ in range(fdp.ConsumeIntInRange(1, 8)):
            spoilt[fdp.ConsumeIntInRange(0, len(spoilt) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
        blob = bytes(spoilt)
    try:
        verify(blob, KEY.public_key(), nameplate="482", now=1_900_000_000.0)
    except AttestationError:
        return
    assert blob == GENUINE, blob


def harness(argv: list[str]) -> None:
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.exit(fuzz_main("bench.fuzz.attestation", harness, None))
