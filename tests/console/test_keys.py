"""Qt key events become the protocol's key events: special keys, shortcuts, AltGr, Polish."""

from __future__ import annotations

from PySide6.QtCore import Qt

from console.app.keys import KeyTranslator, is_release_combo
from protocol.messages import KeyEvent, Modifiers

K = Qt.Key
M = Qt.KeyboardModifier
NONE = M.NoModifier


def keys(events: list[KeyEvent]) -> list[tuple[str, bool]]:
    return [(e.key, e.down) for e in events]


def test_plain_letter_and_shifted_letter() -> None:
    t = KeyTranslator()
    assert keys(t.press(K.Key_A, "a", NONE)) == [("a", True)]
    assert keys(t.release(K.Key_A, NONE)) == [("a", False)]
    assert keys(t.press(K.Key_Shift, "", M.ShiftModifier)) == [("shift", True)]
    press = t.press(K.Key_A, "A", M.ShiftModifier)
    assert keys(press) == [("A", True)] and press[0].modifiers == Modifiers.SHIFT


def test_special_keys_use_their_names() -> None:
    t = KeyTranslator()
    for qt_key, name in [
        (K.Key_Return, "enter"),
        (K.Key_Escape, "esc"),
        (K.Key_F5, "f5"),
        (K.Key_F12, "f12"),
        (K.Key_Left, "left"),
        (K.Key_PageDown, "page_down"),
        (K.Key_Delete, "delete"),
        (K.Key_Tab, "tab"),
        (K.Key_Space, "space"),
        (K.Key_Backspace, "backspace"),
    ]:
        assert keys(t.press(qt_key, "", NONE)) == [(name, True)], name


def test_ctrl_c_sends_ctrl_then_the_letter_not_a_control_character() -> None:
    t = KeyTranslator()
    assert keys(t.press(K.Key_Control, "", M.ControlModifier)) == [("ctrl", True)]
    press = t.press(K.Key_C, "\x03", M.ControlModifier)
    assert keys(press) == [("c", True)] and press[0].modifiers == Modifiers.CTRL


def test_alt_tab_goes_to_the_pc() -> None:
    t = KeyTranslator()
    assert keys(t.press(K.Key_Alt, "", M.AltModifier)) == [("alt", True)]
    assert keys(t.press(K.Key_Tab, "\t", M.AltModifier)) == [("tab", True)]


def test_altgr_polish_letter_is_sent_as_the_character() -> None:
    t = KeyTranslator()
    assert t.press(K.Key_AltGr, "", NONE) == []  # AltGr itself never reaches the PC
    events = t.press(K.Key_A, "ą", M.GroupSwitchModifier)
    assert keys(events) == [("ą", True), ("ą", False)]
    assert events[0].modifiers & Modifiers.ALTGR
    assert t.release(K.Key_AltGr, NONE) == []


def test_windows_altgr_as_ctrl_alt_releases_them_around_the_character() -> None:
    t = KeyTranslator()
    t.press(K.Key_Control, "", M.ControlModifier)
    t.press(K.Key_Alt, "", M.ControlModifier | M.AltModifier)
    events = t.press(K.Key_L, "ł", M.ControlModifier | M.AltModifier)
    assert keys(events) == [
        ("ctrl", False),
        ("alt", False),
        ("ł", True),
        ("ł", False),
        ("ctrl", True),
        ("alt", True),
    ]
    # the character carries no Ctrl/Alt: the agent would otherwise hold them around it
    assert events[2].modifiers == Modifiers.ALTGR


def test_release_all_lifts_every_held_key_once() -> None:
    t = KeyTranslator()
    t.press(K.Key_Control, "", M.ControlModifier)
    t.press(K.Key_Shift, "", M.ShiftModifier)
    t.press(K.Key_X, "X", M.ShiftModifier)
    assert sorted(keys(t.release_all())) == [("X", False), ("ctrl", False), ("shift", False)]
    assert t.release_all() == []
    assert t.release(K.Key_X, NONE) == []  # never sent down again: no stray key-up


def test_autorepeat_of_a_modifier_is_not_resent() -> None:
    t = KeyTranslator()
    assert len(t.press(K.Key_Shift, "", M.ShiftModifier)) == 1
    assert t.press(K.Key_Shift, "", M.ShiftModifier, autorepeat=True) == []


def test_ctrl_alt_home_is_the_release_combination() -> None:
    assert is_release_combo(K.Key_Home, M.ControlModifier | M.AltModifier)
    assert not is_release_combo(K.Key_Home, M.ControlModifier)
    assert not is_release_combo(K.Key_End, M.ControlModifier | M.AltModifier)
