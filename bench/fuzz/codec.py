"""Fuzz `protocol.codec`: decode_envelope, decode_control and decode_inner.

Any input must give a message or DecodeError (MessageTooLarge is one); a decoded
message must encode again and decode to an equal message.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from protocol.codec import decode_control, decode_envelope, decode_inner, encode
    from protocol.errors import DecodeError

from bench.fuzz.runner import fuzz_main


def one_input(data: bytes) -> None:
    for decode in (decode_envelope, decode_control, decode_inner):
        try:
            message = decode(data)
        except DecodeError:
            continue
        assert decode(encode(message)) == message, message


def harness(argv: list[str]) -> None:
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.exit(fuzz_main("bench.fuzz.codec", harness, None))
