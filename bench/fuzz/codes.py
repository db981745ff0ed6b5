"""Fuzz `protocol.codes.parse_code` with arbitrary Unicode: a PhoneCode of 3+6 ASCII
digits, or CodeError with a sentence to show."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from protocol.codes import parse_code
    from protocol.errors import CodeError

from bench.fuzz.runner import fuzz_main


def one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(64)
    try:
        code = parse_code(text)
    except CodeError as exc:
        if not str(exc):
            raise AssertionError("a CodeError must carry a sentence for the user") from exc
        return
    assert len(code.nameplate) == 3 and code.nameplate.isascii() and code.nameplate.isdigit()
    assert len(code.secret) == 6 and code.secret.isascii() and code.secret.isdigit()
    assert parse_code(str(code)) == code


def harness(argv: list[str]) -> None:
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.exit(fuzz_main("bench.fuzz.codes", harness, None))
