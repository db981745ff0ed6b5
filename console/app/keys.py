"""Qt key events → the protocol's `KeyEvent`s, with AltGr and Polish letters handled.

Modifiers (Shift, Ctrl, Alt, Meta) travel as keys of their own so that Ctrl+C,
Alt+Tab or Shift+click work on the PC. A character typed *through* AltGr (ą, ł,
€...) is sent as that character: the PC's keyboard layout may differ from the
consultant's, and AltGr on Windows arrives as Ctrl+Alt, so the held Ctrl/Alt
are released around the character on the PC and pressed again after it (the
same trick VNC viewers use), instead of typing Ctrl+Alt+ą.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt

from protocol.messages import KeyEvent, Modifiers

K = Qt.Key

NAMED: dict[int, str] = {
    K.Key_Escape: "esc",
    K.Key_Tab: "tab",
    K.Key_Backtab: "tab",
    K.Key_Backspace: "backspace",
    K.Key_Return: "enter",
    K.Key_Enter: "enter",
    K.Key_Insert: "insert",
    K.Key_Delete: "delete",
    K.Key_Pause: "pause",
    K.Key_Print: "print_screen",
    K.Key_Home: "home",
    K.Key_End: "end",
    K.Key_Left: "left",
    K.Key_Up: "up",
    K.Key_Right: "right",
    K.Key_Down: "down",
    K.Key_PageUp: "page_up",
    K.Key_PageDown: "page_down",
    K.Key_CapsLock: "caps_lock",
    K.Key_NumLock: "num_lock",
    K.Key_ScrollLock: "scroll_lock",
    K.Key_Menu: "menu",
    K.Key_Space: "space",
    **{int(K.Key_F1) + n: f"f{n + 1}" for n in range(24)},
}

MODIFIER_KEYS: dict[int, str] = {
    K.Key_Shift: "shift",
    K.Key_Control: "ctrl",
    K.Key_Alt: "alt",
    K.Key_Meta: "cmd",
    K.Key_Super_L: "cmd",
    K.Key_Super_R: "cmd_r",
}

_RELEASE_COMBO = (K.Key_Home, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
"""Ctrl+Alt+Home releases the captured keyboard (the combination RDP uses for its bar)."""

RELEASE_HINT = "Ctrl+Alt+Home releases the keyboard"


def modifiers_of(qt_modifiers: Qt.KeyboardModifier, altgr: bool = False) -> Modifiers:
    """The protocol's modifier flags for Qt's."""
    flags = Modifiers.NONE
    if qt_modifiers & Qt.KeyboardModifier.ShiftModifier:
        flags |= Modifiers.SHIFT
    if qt_modifiers & Qt.KeyboardModifier.ControlModifier:
        flags |= Modifiers.CTRL
    if qt_modifiers & Qt.KeyboardModifier.AltModifier:
        flags |= Modifiers.ALT
    if qt_modifiers & Qt.KeyboardModifier.MetaModifier:
        flags |= Modifiers.META
    if altgr or qt_modifiers & Qt.KeyboardModifier.GroupSwitchModifier:
        flags |= Modifiers.ALTGR
    return flags


def is_release_combo(key: int, qt_modifiers: Qt.KeyboardModifier) -> bool:
    combo_key, combo_mods = _RELEASE_COMBO
    return key == combo_key and (qt_modifiers & combo_mods) == combo_mods


@dataclass
class KeyTranslator:
    """Turns one viewer's key presses and releases into KeyEvents, tracking held keys.

    It remembers which keys are down on the PC so that `release_all()` can lift
    them when the viewer loses focus or control: a consultant's Alt never stays
    stuck on the user's PC.
    """

    def __post_init__(self) -> None:
        self.held: dict[int, str] = {}  # Qt key -> protocol key sent down
        self.altgr = False

    def press(
        self, key: int, text: str, qt_modifiers: Qt.KeyboardModifier, autorepeat: bool = False
    ) -> list[KeyEvent]:
        """The events for a key press (empty when nothing should reach the PC)."""
        if key == K.Key_AltGr:
            self.altgr = True  # never sent: the characters it makes are sent instead
            return []
        mods = modifiers_of(qt_modifiers, self.altgr)
        if key in MODIFIER_KEYS:
            if autorepeat and key in self.held:
                return []
            modifier = MODIFIER_KEYS[key]
            self.held[key] = modifier
            return [KeyEvent(key=modifier, down=True, modifiers=mods)]
        name = self._name_for(key, text, qt_modifiers)
        if name is None:
            return []
        composed = len(name) == 1 and (
            self.altgr
            or (
                qt_modifiers & Qt.KeyboardModifier.ControlModifier
                and qt_modifiers & Qt.KeyboardModifier.AltModifier
                and _is_typed_text(text)
            )
        )
        if composed:
            return self._composed(name, mods)
        self.held[key] = name
        return [KeyEvent(key=name, down=True, modifiers=mods)]

    def release(self, key: int, qt_modifiers: Qt.KeyboardModifier) -> list[KeyEvent]:
        """The events for a key release: only for keys this translator sent down."""
        if key == K.Key_AltGr:
            self.altgr = False
            return []
        name = self.held.pop(key, None)
        if name is None:
            return []
        return [KeyEvent(key=name, down=False, modifiers=modifiers_of(qt_modifiers, self.altgr))]

    def release_all(self) -> list[KeyEvent]:
        """Key-ups for everything still held on the PC (focus lost, control gone)."""
        events = [KeyEvent(key=name, down=False) for name in self.held.values()]
        self.held.clear()
        self.altgr = False
        return events

    def _composed(self, char: str, mods: Modifiers) -> list[KeyEvent]:
        # the agent holds Ctrl/Alt/Meta flagged on a character around it: AltGr's
        # character must carry none of them, only what is part of the character
        mods = Modifiers.ALTGR | (mods & Modifiers.SHIFT)
        held_mods = [name for name in self.held.values() if name in ("ctrl", "alt")]
        events = [KeyEvent(key=name, down=False) for name in held_mods]
        events += [
            KeyEvent(key=char, down=True, modifiers=mods),
            KeyEvent(key=char, down=False, modifiers=mods),
        ]
        events += [KeyEvent(key=name, down=True) for name in held_mods]
        return events

    @staticmethod
    def _name_for(key: int, text: str, qt_modifiers: Qt.KeyboardModifier) -> str | None:
        if key in NAMED:
            return NAMED[key]
        if _is_typed_text(text):
            return text
        # with Ctrl held Qt's text is a control character: use the key's own symbol
        if 0x20 < key < 0x110000:
            char = chr(key)
            if char.isprintable():
                return (
                    char.lower() if not qt_modifiers & Qt.KeyboardModifier.ShiftModifier else char
                )
        return None


def _is_typed_text(text: str) -> bool:
    return len(text) == 1 and text.isprintable() and text != " "
