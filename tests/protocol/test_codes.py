from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.codes import PhoneCode, new_nameplate, new_secret, parse_code
from protocol.errors import CodeCharacterError, CodeError, CodeLengthError


@pytest.mark.parametrize(
    "typed",
    [
        "482-913-775",
        "482 913 775",
        "482913775",
        "482-913775",
        "  482–913—775 ",
        "482.913.775",
        "482\u00a0913\u00a0775",
    ],
)
def test_user_types_the_code_in_any_common_way(typed: str) -> None:
    assert parse_code(typed) == PhoneCode("482", "913775")


def test_code_reads_aloud_in_three_groups() -> None:
    code = PhoneCode("007", "000123")
    assert str(code) == "007-000-123"
    assert parse_code(str(code)) == code
    assert code.password == b"000123"


@pytest.mark.parametrize("typed", ["", "   ", "48291377", "4829137755", "482-913"])
def test_wrong_length_is_a_length_error_a_dialog_can_show(typed: str) -> None:
    with pytest.raises(CodeLengthError) as info:
        parse_code(typed)
    assert info.value.reason == "length"
    assert str(info.value).endswith(".")


@pytest.mark.parametrize("typed", ["482-913-77a", "482+913+775", "٤٨٢٩١٣٧٧٥", "482,913,775"])
def test_letters_and_foreign_digits_are_a_character_error(typed: str) -> None:
    with pytest.raises(CodeCharacterError) as info:
        parse_code(typed)
    assert "digits" in str(info.value)


def test_phone_code_refuses_malformed_parts() -> None:
    with pytest.raises(CodeError):
        PhoneCode("48", "913775")
    with pytest.raises(CodeError):
        PhoneCode("482", "91377x")


def test_generated_secrets_and_nameplates_have_the_right_shape() -> None:
    secrets = {new_secret() for _ in range(200)}
    assert all(len(s) == 6 and s.isdigit() for s in secrets)
    assert len(secrets) > 190  # drawn, not constant
    assert all(len(n) == 3 and n.isdigit() for n in (new_nameplate() for _ in range(50)))


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_a_code_error(text: str) -> None:
    try:
        code = parse_code(text)
    except CodeError:
        return
    assert len(code.nameplate + code.secret) == 9
