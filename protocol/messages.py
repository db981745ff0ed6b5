"""Every message of the product: one tagged union of frozen dataclasses (STYLE §4).

Two families share the tag space:

* **envelope** messages (tags 1–31) are what the relay sees: relay control, the
  PAKE exchange, key confirmation, sealed boxes and the agent's consent receipts;
* **inner** messages (tags 32 and up) travel only inside a `Sealed` box, so the
  relay can neither read nor forge them.

Messages are validated when built: a wrong type, an out-of-range number or an
oversized field raises `LocalProtocolError` at the call site that built it. The
codec (`protocol.codec`) turns the same faults in received bytes into
`DecodeError` / `MessageTooLarge`.

Fields are positional on the wire in declaration order; never reorder them,
only append a new message type with a new tag.
"""

from __future__ import annotations

import math
import struct
import types
import typing
from dataclasses import dataclass, field, fields
from enum import IntEnum, IntFlag
from typing import Any, ClassVar

from protocol.errors import LocalProtocolError
from protocol.limits import (
    MAX_CLIPBOARD_LENGTH,
    MAX_CURSOR_DIMENSION,
    MAX_MESSAGE_SIZE,
    MAX_MONITORS,
    MAX_REGIONS_PER_FRAME,
    MAX_SCREEN_DIMENSION,
    MAX_STRING_LENGTH,
    MAX_TEXT_INPUT_LENGTH,
    NAMEPLATE_DIGITS,
)

ENVELOPE_TAGS = range(1, 32)
INNER_TAGS = range(32, 128)

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)


class InvalidField(LocalProtocolError):
    """A message was built with a field that breaks its type or limits.

    `too_large` tells the codec to report `MessageTooLarge` rather than
    `DecodeError` when the value came off the wire.
    """

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


# --------------------------------------------------------------------------- enums


class Rights(IntEnum):
    """What the user allowed. CONTROL includes seeing the screen."""

    VIEW = 1
    CONTROL = 2


class Party(IntEnum):
    AGENT = 1
    CONSOLE = 2
    RELAY = 3


class EndReason(IntEnum):
    USER_ENDED = 1  # the PC's user clicked End
    CONSULTANT_ENDED = 2  # the consultant ended it from the console
    DENIED = 3  # consent was refused or timed out
    PROTOCOL_ERROR = 4  # the peer broke the protocol or the channel was attacked
    PEER_LOST = 5  # the link dropped and did not come back within the grace period
    WRONG_CODE = 6  # key confirmation failed
    AGENT_SHUTDOWN = 7  # the agent process is exiting (logoff, shutdown)
    RELAY_REFUSED = 8  # the relay refused or ended the pairing (see the detail)


class DenyReason(IntEnum):
    USER_DENIED = 1  # the user clicked Deny
    TIMEOUT = 2  # nobody answered: never an implicit yes
    ATTESTATION_INVALID = 3  # the relay's signature did not check: name not shown
    BUSY = 4  # a session is already running on this PC


class RelayErrorCode(IntEnum):
    BAD_MESSAGE = 1
    UNAUTHORIZED = 2
    TICKET_UNKNOWN = 3
    NAMEPLATE_UNKNOWN = 4  # never allocated, already used, burnt, or expired
    NAMEPLATE_EXHAUSTED = 5
    RATE_LIMITED = 6
    OUTSIDE_HOURS = 7
    VERSION_MISMATCH = 8
    PEER_GONE = 9  # the other end left before the session was keyed
    PEER_TOO_SLOW = 10  # back-pressure gave up on a peer
    SHUTTING_DOWN = 11
    INTERNAL = 12
    SESSION_UNKNOWN = 13  # a resume for a session that is gone, or with a wrong token
    STORAGE_FULL = 14  # the relay's disk is full: it cannot record a new session


class AbortReason(IntEnum):
    WRONG_CODE = 1
    PROTOCOL_ERROR = 2


class AuditKind(IntEnum):
    """Consent receipts the agent reports to the relay's audit log (DESIGN §2)."""

    REQUESTED = 1
    GRANTED = 2
    DENIED = 3
    ESCALATION_GRANTED = 4
    ESCALATION_DENIED = 5
    HAND_BACK_STARTED = 6
    HAND_BACK_ENDED = 7
    ENDED = 8


class Encoding(IntEnum):
    """How a frame region's bytes are coded."""

    JPEG = 1  # photo-like areas; the decoder yields BGRA/RGB
    ZLIB_BGRA = 2  # lossless: zlib over raw BGRA rows (text, UI chrome)
    SOLID = 3  # a single colour: 4 bytes B, G, R, A
    BLANK = 4  # the screen is withheld (hand-back): draw the privacy curtain
    # appended by the streaming issue (8): one H.264 access unit (Annex B, libx264
    # ultrafast, no B-frames) covering the whole monitor; the console keeps one decoder
    # per stream and the agent one encoder, so a stream's first H264 frame is an IDR
    # and later runs of video go on with P-frames against the decoder's last picture
    H264 = 5
    # a rectangle of the console's own picture moves (a scroll): `data` is the source's
    # top-left corner, 2 × uint16 big-endian (x, y); the same width and height as the
    # region; applied in order with the frame's other regions, overlap allowed
    COPY = 6


class MouseButton(IntEnum):
    LEFT = 1
    MIDDLE = 2
    RIGHT = 3
    BACK = 4
    FORWARD = 5


class Modifiers(IntFlag):
    NONE = 0
    SHIFT = 1
    CTRL = 2
    ALT = 4
    META = 8
    ALTGR = 16


class NoticeCode(IntEnum):
    SECURE_DESKTOP = 1  # UAC / lock screen: the user must answer this prompt
    INPUT_PAUSED = 2  # an agent window (consent, banner) is on screen: input not injected
    INPUT_RESUMED = 3
    ELEVATED_WINDOW = 4  # the focused window ignores injected input
    INFO = 5


NAMED_KEYS: frozenset[str] = frozenset(
    {
        "alt",
        "alt_gr",
        "alt_r",
        "backspace",
        "caps_lock",
        "cmd",
        "cmd_r",
        "ctrl",
        "ctrl_r",
        "delete",
        "down",
        "end",
        "enter",
        "esc",
        "home",
        "insert",
        "left",
        "menu",
        "num_lock",
        "page_down",
        "page_up",
        "pause",
        "print_screen",
        "right",
        "scroll_lock",
        "shift",
        "shift_r",
        "space",
        "tab",
        "up",
        *(f"f{n}" for n in range(1, 25)),
    }
)
"""Key identities that are not a printable character; the names are pynput's
`Key` members, which exist on Windows and X11 alike."""


# -------------------------------------------------------------------- field helpers


def text(max_length: int = MAX_STRING_LENGTH) -> Any:
    return field(metadata={"max_length": max_length})


def blob(max_length: int = MAX_MESSAGE_SIZE, min_length: int = 0) -> Any:
    return field(metadata={"max_length": max_length, "min_length": min_length})


def number(lo: float, hi: float) -> Any:
    return field(metadata={"range": (lo, hi)})


def items(max_items: int) -> Any:
    return field(metadata={"max_items": max_items})


_COORD = (-MAX_SCREEN_DIMENSION, MAX_SCREEN_DIMENSION)
_DIMENSION = (0, MAX_SCREEN_DIMENSION)


class _Checker:
    """Type and limit checks for one field, built once per class."""

    def __init__(self, owner: str, name: str, tp: Any, meta: Any) -> None:
        self.owner, self.name, self.meta = owner, name, meta
        self.optional = False
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                raise TypeError(f"{owner}.{name}: only Optional[X] unions are supported")
            self.optional, tp = True, args[0]
            origin = typing.get_origin(tp)
        self.item_type: Any = None
        if origin is tuple:
            self.kind: Any = tuple
            self.item_type = typing.get_args(tp)[0]
        else:
            self.kind = tp

    def fail(self, why: str, *, too_large: bool = False) -> typing.NoReturn:
        raise InvalidField(f"{self.owner}.{self.name}: {why}", too_large=too_large)

    def fast(self) -> typing.Callable[[Any], Any]:
        """A check specialised for this field's kind: the common, valid case costs one
        or two comparisons; anything else takes the full `check` (which normalises or raises)."""
        meta, full, kind = self.meta, self.check, self.kind
        if kind is int:
            lo, hi = meta.get("range", _INT64)
            return lambda v: v if type(v) is int and lo <= v <= hi else full(v)
        if kind is bytes:
            most, least = meta.get("max_length", MAX_MESSAGE_SIZE), meta.get("min_length", 0)
            return lambda v: v if type(v) is bytes and least <= len(v) <= most else full(v)
        if kind is str:
            most = meta.get("max_length", MAX_STRING_LENGTH)
            return lambda v: v if type(v) is str and len(v) <= most else full(v)
        if kind is bool:
            return lambda v: v if type(v) is bool else full(v)
        if isinstance(kind, type) and issubclass(kind, IntEnum) and not issubclass(kind, IntFlag):
            members: dict[int, IntEnum] = {int(m): m for m in kind}

            def enum(v: Any) -> Any:
                if type(v) is kind:
                    return v
                member = members.get(v) if type(v) is int else None
                return member if member is not None else full(v)

            return enum
        if (
            kind is tuple
            and isinstance(self.item_type, type)
            and issubclass(self.item_type, Struct)
        ):
            item, most = self.item_type, meta.get("max_items", MAX_REGIONS_PER_FRAME)

            def records(v: Any) -> Any:
                if type(v) is tuple and len(v) <= most:
                    for r in v:
                        if type(r) is not item:
                            return full(v)
                    return v
                return full(v)

            return records
        return full

    def check(self, value: Any) -> Any:
        """Return the value to store (enums and floats normalised) or raise InvalidField."""
        if value is None:
            if self.optional:
                return None
            self.fail("is required")
        return self._check_as(self.kind, value)

    def _check_as(self, kind: Any, value: Any) -> Any:
        meta = self.meta
        if kind is tuple:
            if not isinstance(value, tuple | list):
                self.fail(f"expected a list, got {type(value).__name__}")
            if len(value) > meta.get("max_items", MAX_REGIONS_PER_FRAME):
                self.fail(f"more than {meta.get('max_items')} items", too_large=True)
            return tuple(self._check_item(v) for v in value)
        if isinstance(kind, type) and issubclass(kind, IntFlag):
            if type(value) is bool or not isinstance(value, int):
                self.fail(f"expected flags, got {type(value).__name__}")
            if value & ~_all_flags(kind) or value < 0:
                self.fail(f"unknown flag bits in {value}")
            return kind(value)
        if isinstance(kind, type) and issubclass(kind, IntEnum):
            if type(value) is bool or not isinstance(value, int):
                self.fail(f"expected {kind.__name__}, got {type(value).__name__}")
            try:
                return kind(value)
            except ValueError:
                self.fail(f"{value} is not a {kind.__name__}")
        if kind is bool:
            if type(value) is not bool:
                self.fail(f"expected bool, got {type(value).__name__}")
            return value
        if kind is int:
            if type(value) is bool or not isinstance(value, int):
                self.fail(f"expected int, got {type(value).__name__}")
            lo, hi = meta.get("range", _INT64)
            if not lo <= value <= hi:
                self.fail(f"{value} is outside {lo}..{hi}")
            return int(value)
        if kind is float:
            if type(value) is bool or not isinstance(value, int | float):
                self.fail(f"expected a number, got {type(value).__name__}")
            value = float(value)
            if not math.isfinite(value):
                self.fail("must be finite")
            lo, hi = meta.get("range", (-math.inf, math.inf))
            if not lo <= value <= hi:
                self.fail(f"{value} is outside {lo}..{hi}")
            return value
        if kind is str:
            if not isinstance(value, str):
                self.fail(f"expected str, got {type(value).__name__}")
            limit = meta.get("max_length", MAX_STRING_LENGTH)
            if len(value) > limit:
                self.fail(f"longer than {limit} characters", too_large=True)
            return value
        if kind is bytes:
            if not isinstance(value, bytes | bytearray | memoryview):
                self.fail(f"expected bytes, got {type(value).__name__}")
            if len(value) > meta.get("max_length", MAX_MESSAGE_SIZE):
                self.fail(f"longer than {meta['max_length']} bytes", too_large=True)
            if len(value) < meta.get("min_length", 0):
                self.fail(f"shorter than {meta['min_length']} bytes")
            return bytes(value)
        if isinstance(kind, type) and issubclass(kind, Struct):
            if not isinstance(value, kind):
                self.fail(f"expected {kind.__name__}, got {type(value).__name__}")
            return value
        raise TypeError(f"{self.owner}.{self.name}: unsupported field type {kind!r}")

    def _check_item(self, value: Any) -> Any:
        return self._check_as(self.item_type, value)


def _all_flags(kind: type[IntFlag]) -> int:
    mask = 0
    for member in kind:
        mask |= int(member)
    return mask


class Struct:
    """Base of every message and nested record: validated, frozen, positional on the wire."""

    __slots__ = ()

    def __post_init__(self) -> None:
        cls = type(self)
        checkers = cls.__dict__.get("_checkers_built")
        if checkers is None:
            checkers = _build_checkers(cls)
        for name, check in checkers:
            value = getattr(self, name)
            checked = check(value)
            if checked is not value:
                object.__setattr__(self, name, checked)
        self.validate()

    def validate(self) -> None:
        """Cross-field rules; raise `InvalidField`."""


def _build_checkers(cls: type) -> tuple[tuple[str, typing.Callable[[Any], Any]], ...]:
    hints = typing.get_type_hints(cls)
    checkers = tuple(
        (f.name, _Checker(cls.__name__, f.name, hints[f.name], f.metadata).fast())
        for f in fields(cls)
    )
    cls._checkers_built = checkers  # type: ignore[attr-defined]
    return checkers


class Message(Struct):
    """A top-level message: has a tag on the wire."""

    __slots__ = ()
    TAG: ClassVar[int]


MESSAGE_TYPES: dict[int, type[Message]] = {}


def _register(tag: int) -> typing.Callable[[type[Message]], type[Message]]:
    def register(cls: type[Message]) -> type[Message]:
        if tag in MESSAGE_TYPES:
            raise TypeError(f"tag {tag} used twice ({MESSAGE_TYPES[tag].__name__}, {cls.__name__})")
        cls.TAG = tag
        MESSAGE_TYPES[tag] = cls
        return cls

    return register


_T = typing.TypeVar("_T", bound=type[Message])


def message(tag: int) -> typing.Callable[[_T], _T]:
    return _register(tag)  # type: ignore[return-value]


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise InvalidField(why)


def _check_nameplate(owner: str, nameplate: str) -> None:
    _need(
        len(nameplate) == NAMEPLATE_DIGITS and nameplate.isascii() and nameplate.isdigit(),
        f"{owner}.nameplate: must be {NAMEPLATE_DIGITS} digits",
    )


# ------------------------------------------------------------------ nested records


@dataclass(frozen=True, slots=True, kw_only=True)
class Region(Struct):
    """A rectangle of the screen and its coded pixels."""

    x: int = number(*_DIMENSION)
    y: int = number(*_DIMENSION)
    width: int = number(1, MAX_SCREEN_DIMENSION)
    height: int = number(1, MAX_SCREEN_DIMENSION)
    encoding: Encoding
    data: bytes = blob()

    def validate(self) -> None:
        if self.encoding is Encoding.SOLID:
            _need(len(self.data) == 4, "Region: a SOLID region carries 4 bytes (B, G, R, A)")
        elif self.encoding is Encoding.COPY:
            _need(len(self.data) == 4, "Region: a COPY region carries 4 bytes (source x, y)")
            src_x, src_y = struct.unpack(">HH", self.data)
            _need(
                src_x + self.width <= MAX_SCREEN_DIMENSION
                and src_y + self.height <= MAX_SCREEN_DIMENSION,
                "Region: a COPY region's source lies outside any screen",
            )

    @property
    def source(self) -> tuple[int, int]:
        """A COPY region's source corner (x, y).

        Raises:
            ValueError: this is not a COPY region.
        """
        if self.encoding is not Encoding.COPY:
            raise ValueError("only a COPY region has a source")
        x, y = struct.unpack(">HH", self.data)
        return int(x), int(y)


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitor(Struct):
    index: int = number(0, MAX_MONITORS - 1)
    x: int = number(*_COORD)
    y: int = number(*_COORD)
    width: int = number(1, MAX_SCREEN_DIMENSION)
    height: int = number(1, MAX_SCREEN_DIMENSION)
    scale_percent: int = number(50, 500)  # DPI scaling: 100 = 96 dpi
    primary: bool = False
    name: str = field(default="", metadata={"max_length": 64})


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorShape(Struct):
    width: int = number(1, MAX_CURSOR_DIMENSION)
    height: int = number(1, MAX_CURSOR_DIMENSION)
    hot_x: int = number(0, MAX_CURSOR_DIMENSION - 1)
    hot_y: int = number(0, MAX_CURSOR_DIMENSION - 1)
    rgba: bytes = blob(MAX_CURSOR_DIMENSION * MAX_CURSOR_DIMENSION * 4)

    def validate(self) -> None:
        _need(
            len(self.rgba) == self.width * self.height * 4,
            "CursorShape: rgba must hold width*height*4 bytes",
        )
        _need(self.hot_x < self.width and self.hot_y < self.height, "CursorShape: hotspot outside")


# --------------------------------------------------------- envelope: relay control


@message(1)
@dataclass(frozen=True, slots=True, kw_only=True)
class AllocateNameplate(Message):
    """Console → relay: a nameplate for this registered ticket."""

    ticket_id: str = text(64)


@message(2)
@dataclass(frozen=True, slots=True, kw_only=True)
class NameplateAllocated(Message):
    """Relay → console: the nameplate, its expiry and the signed attestation."""

    nameplate: str = text(NAMEPLATE_DIGITS)
    expires_at: float = number(0, 2**40)
    attestation: bytes = blob(2048)

    def validate(self) -> None:
        _check_nameplate("NameplateAllocated", self.nameplate)


@message(3)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimNameplate(Message):
    """Agent → relay, sent only after the user typed the code and clicked Connect."""

    nameplate: str = text(NAMEPLATE_DIGITS)
    protocol_version: int = number(0, 65535)

    def validate(self) -> None:
        _check_nameplate("ClaimNameplate", self.nameplate)


@message(4)
@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed(Message):
    """Relay → agent: the nameplate was free and is now bound to this connection."""

    expires_at: float = number(0, 2**40)


@message(5)
@dataclass(frozen=True, slots=True, kw_only=True)
class PeerJoined(Message):
    """Relay → both: the other end is connected; the PAKE may start."""


@message(6)
@dataclass(frozen=True, slots=True, kw_only=True)
class PeerLeft(Message):
    """Relay → the remaining end: the other end is gone for good (it left, or its link
    dropped and it did not resume in time); the session is over."""


@message(7)
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOpened(Message):
    """Relay → both, once paired: the id the audit log files this session under, and
    this end's token for resuming it after a dropped link (empty: the relay offers no resume)."""

    session_id: str = text(64)
    resume_token: bytes = field(default=b"", metadata={"max_length": 64})
    resume_grace_seconds: float = field(default=0.0, metadata={"range": (0, 3600)})


@message(9)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pake(Message):
    """A SPAKE2 message: one side byte and a 32-byte group element."""

    body: bytes = blob(33, 33)


@message(10)
@dataclass(frozen=True, slots=True, kw_only=True)
class Confirm(Message):
    """Key confirmation: HMAC of the role label under the confirmation key."""

    mac: bytes = blob(32, 32)


@message(11)
@dataclass(frozen=True, slots=True, kw_only=True)
class Sealed(Message):
    """An AEAD box: 8-byte counter, ciphertext and tag. The relay forwards it blind."""

    box: bytes = blob()


@message(12)
@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(Message):
    """Either end → relay: end the pairing and burn the nameplate."""

    reason: AbortReason


@message(13)
@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport(Message):
    """Agent → relay: a consent receipt, in clear so the relay can log it (DESIGN §2)."""

    kind: AuditKind
    rights: int = number(0, 2)  # 0 = none, else a Rights value
    detail: str = text(256)


@message(14)
@dataclass(frozen=True, slots=True, kw_only=True)
class RelayError(Message):
    """Relay → an end: why a request failed; the message is safe to show."""

    code: RelayErrorCode
    message: str = text(512)
    retry_after: float = number(0, 86400)


@message(15)
@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(Message):
    """An end → relay, first on a new link after its old one dropped: rejoin the session."""

    session_id: str = text(64)
    token: bytes = blob(64, 16)


@message(16)
@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(Message):
    """Relay → the end that came back: its new link is attached to the session."""


@message(17)
@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAway(Message):
    """Relay → the end that stayed: the other end's link dropped; it may come back in time."""

    grace_seconds: float = number(0, 3600)


@message(18)
@dataclass(frozen=True, slots=True, kw_only=True)
class PeerReturned(Message):
    """Relay → the end that stayed: the other end is back."""


@message(19)
@dataclass(frozen=True, slots=True, kw_only=True)
class Rewind(Message):
    """An end → the other end, after a resume: the next sealed counter it expects.

    The peer resends its sealed boxes from that counter. It travels in clear: a relay
    that alters it only makes the channel fail (replay or gap), which it could anyway.
    """

    next_counter: int = number(*_UINT64)


# ------------------------------------------------------------- inner: the session


@message(32)
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRequest(Message):
    """Console → agent: who asks, for which ticket, with which rights."""

    consultant: str = text(128)
    ticket_id: str = text(64)
    ticket_title: str = text(256)
    rights: Rights
    attestation: bytes = blob(2048)


@message(33)
@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentPending(Message):
    """Agent → console: the prompt is on the user's screen."""

    timeout_seconds: float = number(0, 3600)


@message(34)
@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentGranted(Message):
    rights: Rights


@message(35)
@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentDenied(Message):
    reason: DenyReason


@message(36)
@dataclass(frozen=True, slots=True, kw_only=True)
class RightsRequest(Message):
    """Console → agent: ask for other rights (more needs a new click; less is immediate)."""

    rights: Rights


@message(37)
@dataclass(frozen=True, slots=True, kw_only=True)
class HandBackRequest(Message):
    """Console → agent: hand the keyboard to the user (a password must be typed)."""


@message(38)
@dataclass(frozen=True, slots=True, kw_only=True)
class HandBackStarted(Message):
    """Agent → console: input is the user's and the screen is withheld until HandBackEnded."""

    by: Party


@message(39)
@dataclass(frozen=True, slots=True, kw_only=True)
class HandBackEnded(Message):
    """Agent → console: the user clicked Done; the session's rights apply again."""


@message(40)
@dataclass(frozen=True, slots=True, kw_only=True)
class Frame(Message):
    """Agent → console: changed regions of the screen."""

    frame_id: int = number(*_UINT64)
    final: bool = True  # False: more parts of the same frame follow
    captured_at_ns: int = number(*_UINT64)
    width: int = number(1, MAX_SCREEN_DIMENSION)
    height: int = number(1, MAX_SCREEN_DIMENSION)
    regions: tuple[Region, ...] = items(MAX_REGIONS_PER_FRAME)

    def validate(self) -> None:
        for r in self.regions:
            _need(
                r.x + r.width <= self.width and r.y + r.height <= self.height,
                f"Frame: region {r.x},{r.y} {r.width}x{r.height} outside "
                f"the {self.width}x{self.height} screen",
            )


@message(41)
@dataclass(frozen=True, slots=True, kw_only=True)
class FrameAck(Message):
    """Console → agent: frame painted; the agent's pacing window opens by one."""

    frame_id: int = number(*_UINT64)


@message(42)
@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor(Message):
    x: int = number(*_COORD)
    y: int = number(*_COORD)
    visible: bool = True
    shape: CursorShape | None = None


@message(43)
@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorLayout(Message):
    monitors: tuple[Monitor, ...] = items(MAX_MONITORS)
    selected: int = number(0, MAX_MONITORS - 1)

    def validate(self) -> None:
        _need(len(self.monitors) >= 1, "MonitorLayout: at least one monitor")
        _need(
            any(m.index == self.selected for m in self.monitors),
            "MonitorLayout: selected monitor not listed",
        )


@message(44)
@dataclass(frozen=True, slots=True, kw_only=True)
class SelectMonitor(Message):
    index: int = number(0, MAX_MONITORS - 1)


@message(45)
@dataclass(frozen=True, slots=True, kw_only=True)
class PointerMove(Message):
    """Pointer position in the selected monitor's pixels."""

    x: int = number(*_COORD)
    y: int = number(*_COORD)


@message(46)
@dataclass(frozen=True, slots=True, kw_only=True)
class PointerButton(Message):
    button: MouseButton
    down: bool
    x: int = number(*_COORD)
    y: int = number(*_COORD)


@message(47)
@dataclass(frozen=True, slots=True, kw_only=True)
class Scroll(Message):
    """Wheel notches (one click of a mouse wheel each) at a pointer position; positive
    dy is the wheel turned away from the user (the view scrolls up), positive dx
    scrolls right, as in Qt's angleDelta and pynput's scroll()."""

    dx: int = number(-120, 120)
    dy: int = number(-120, 120)
    x: int = number(*_COORD)
    y: int = number(*_COORD)


@message(48)
@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEvent(Message):
    """A key down or up: `key` is one printable character or a NAMED_KEYS name.

    A character is what the key produces, Shift and AltGr already applied ("A",
    "ą", "@"); `modifiers` then says which of Ctrl/Alt/Meta are held around it
    (Shift/AltGr bits are informative for characters, significant for named keys)."""

    key: str = text(16)
    down: bool
    modifiers: Modifiers = Modifiers.NONE

    def validate(self) -> None:
        printable = len(self.key) == 1 and self.key.isprintable()
        _need(printable or self.key in NAMED_KEYS, f"KeyEvent: unknown key {self.key!r}")


@message(49)
@dataclass(frozen=True, slots=True, kw_only=True)
class TypeText(Message):
    """Text to type as the user's keyboard would (layout-independent)."""

    text: str = text(MAX_TEXT_INPUT_LENGTH)


@message(50)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClipboardText(Message):
    text: str = text(MAX_CLIPBOARD_LENGTH)


@message(51)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    nonce: int = number(*_UINT64)
    sent_at_ns: int = number(*_UINT64)


@message(52)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    nonce: int = number(*_UINT64)
    sent_at_ns: int = number(*_UINT64)


@message(53)
@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Message):
    """Agent → console: something the consultant must know (secure desktop, paused input)."""

    code: NoticeCode
    text: str = text(512)


@message(55)
@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered(Message):
    """Either end, now and then: every sealed box before `next_counter` has arrived,
    so the other end need not keep it for a resend after a resume."""

    next_counter: int = number(*_UINT64)


@message(54)
@dataclass(frozen=True, slots=True, kw_only=True)
class End(Message):
    """Either end: the session is over; nothing is accepted after it."""

    by: Party
    reason: EndReason
    detail: str = text(256)


INPUT_MESSAGES: tuple[type[Message], ...] = (
    PointerMove,
    PointerButton,
    Scroll,
    KeyEvent,
    TypeText,
)
"""Messages that drive the PC's mouse or keyboard: accepted only with CONTROL."""


def is_envelope(cls: type[Message]) -> bool:
    return cls.TAG in ENVELOPE_TAGS
