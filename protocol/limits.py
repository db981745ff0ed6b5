"""Named limits of the protocol, each with the reason for its value (STYLE §7).

Decoders check these *before* allocating. Shells may lower them; raising them
past these values needs a protocol change on both ends.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""Bound into the PAKE identities and the HKDF info, so two versions never key together."""

MAX_MESSAGE_SIZE = 8 * 1024 * 1024
"""One WebSocket message, envelope included. A 1920×1080 frame sent lossless
(zlib over BGRA) of a busy desktop compresses to 1–4 MiB; a 4K frame is split by
the agent into several `Frame` parts, each under this limit. The relay buffers at
most a few of these per direction, so this also bounds its memory per session."""

MAX_CONTROL_MESSAGE_SIZE = 4096
"""Anything the relay reads itself (claims, allocations, audit reports): these are
a few short strings, so 4 KiB leaves room and denies memory games."""

MAX_STRING_LENGTH = 1024
"""Names, ticket titles, reasons: a helpdesk ticket title is a line, not a page."""

MAX_CLIPBOARD_LENGTH = 1024 * 1024
"""Clipboard text: 1 Mi characters covers a log excerpt; more is a file transfer."""

MAX_TEXT_INPUT_LENGTH = 4096
"""One `TypeText` message: a pasted command line or a paragraph."""

MAX_REGIONS_PER_FRAME = 4096
"""A 1920×1080 screen in 64×64 tiles is 510 tiles; 4096 allows 4K in 32×32 tiles."""

MAX_MONITORS = 16
"""More monitors than any helpdesk PC has."""

MAX_SCREEN_DIMENSION = 32768
"""X11 and Windows virtual screens stay below 32768 pixels per side."""

MAX_CURSOR_DIMENSION = 256
"""Windows cursors are at most 256×256 (large-cursor accessibility setting)."""

MAX_FIELDS = 16
"""No message has more fields; a decoder never walks a longer array."""

NAMEPLATE_DIGITS = 3
"""DESIGN §2: a 3-digit public nameplate routes the two ends."""

SECRET_DIGITS = 6
"""DESIGN §2: a 6-digit secret; a wrong guess burns the nameplate, so one online
guess per session gives an attacker 1 in 10^6."""

NAMEPLATE_TTL_SECONDS = 600
"""An unclaimed nameplate expires after 10 minutes (issue: relay)."""

RESUME_GRACE_SECONDS = 30.0
"""A dropped link may come back within this time and resume the same consented
session, with the same keys and no new click (the user sees "reconnecting")."""

RETRANSMIT_BUFFER_BYTES = 16 * 1024 * 1024
"""Sealed boxes each end keeps to resend after a resume. Frames are paced by acks,
so what is in flight when a link drops is a few frames; 16 MiB holds several
1080p keyframes. A resume that needs older boxes fails and the session ends."""

CONSENT_TIMEOUT_SECONDS = 120.0
"""A consent prompt left unanswered this long is *denied*, never accepted."""
