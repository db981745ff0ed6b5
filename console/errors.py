"""What the console library raises, drawn as one tree (STYLE §5).

    ConsoleError                   anything the console library raises on purpose
    ├── RelayUnreachable           no TCP/TLS/HTTP answer from the relay (network, DNS, timeout)
    ├── TlsPinMismatch             the relay's certificate is not the pinned one
    ├── ApiError                   the relay answered with an error (status, code, message)
    │   ├── LoginFailed            wrong user, password or TOTP
    │   └── NotLoggedIn            no token, or the token expired: log in again
    ├── SessionRefused             the relay refused a session (ticket closed, outside hours...)
    ├── SessionClosed              an action on a session that has already ended
    ├── InputNotAllowed            input or a request the session's state does not allow now
    └── BadFrame                   the agent sent pixels that do not decode (ends the session)

Library exceptions (aiohttp, ssl, zlib, simplejpeg) are translated here where
they cross into the console's code; `str(error)` is a sentence a UI may show.
"""

from __future__ import annotations


class ConsoleError(Exception):
    """Root of every error the console library raises on purpose."""


class RelayUnreachable(ConsoleError):
    """The relay did not answer: wrong URL, network down, DNS, TLS handshake, or timeout."""


class TlsPinMismatch(ConsoleError):
    """The relay's certificate does not have the pinned sha256 fingerprint."""

    def __init__(self, expected: str, got: str | None) -> None:
        seen = f" it presented {got}" if got else ""
        super().__init__(
            f"The relay's TLS certificate is not the pinned one (expected {expected};{seen}). "
            "Someone may be intercepting the connection: ask the relay's admin."
        )
        self.expected, self.got = expected, got


class ApiError(ConsoleError):
    """The relay answered an API call with an error; `message` is safe to show."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LoginFailed(ApiError):
    """Wrong user name, password or TOTP code (or the account is locked)."""


class NotLoggedIn(ApiError):
    """No token, or the relay no longer accepts it (expired, logged out): log in again."""


class SessionRefused(ConsoleError):
    """The relay refused or ended a session before it was keyed.

    `code` is the relay's `RelayErrorCode` name (for example ``OUTSIDE_HOURS``)
    when the relay said one, and `retry_after` its advice in seconds.
    """

    def __init__(self, message: str, code: str | None = None, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.code, self.retry_after = code, retry_after


class SessionClosed(ConsoleError):
    """The session has ended; nothing more can be sent on it."""


class InputNotAllowed(ConsoleError):
    """The session's state does not allow this now (no control, hand-back, not keyed)."""


class BadFrame(ConsoleError):
    """A frame region that does not decode to its stated size; the session ends with it."""
