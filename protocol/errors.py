"""The one exception tree of zgoda's protocol.

Every fault the protocol can detect is one of these; library exceptions
(msgpack, cryptography, spake2) are translated where they cross into our code.
Local errors mean *we* broke the rules (a bug or a race in the calling shell);
remote errors mean the *peer* (or something between us) did.

    ZgodaError
    ├── CodeError                    the phone code as typed is not a code
    │   ├── CodeLengthError
    │   └── CodeCharacterError
    ├── ProtocolError
    │   ├── LocalProtocolError       our own shell asked for something the rules forbid
    │   └── RemoteProtocolError      the peer (or the relay) sent something the rules forbid
    │       ├── DecodeError          bytes are not a valid message
    │       │   └── MessageTooLarge  over a size limit, rejected before allocating
    │       ├── UnexpectedMessage    a valid message in a state that does not allow it
    │       ├── HandshakeError       the PAKE failed
    │       │   └── WrongCodeError   key confirmation failed: the code was wrong
    │       ├── ChannelError         the sealed channel was attacked or broken
    │       │   ├── TamperError      authentication failed
    │       │   ├── ReplayError      a counter we have already seen
    │       │   ├── GapError         a counter from the future: something was dropped or reordered
    │       │   ├── ReflectionError  our own message came back to us
    │       │   └── TruncatedError   a sealed box too short to hold its tag
    │       └── AttestationError     the relay's signature does not check or has expired
    └── ConfigError                  a configuration value is missing or malformed

`ProtocolError.close_code` maps each error to a WebSocket close code in the
4000–4099 part of the private range (the relay's refusals use
`RELAY_CLOSE_BASE + RelayErrorCode`, 4101 and up), so a shell can close "that one
connection with a code and a short reason" (STYLE §6) without inventing numbers.
"""

from __future__ import annotations

RELAY_CLOSE_BASE = 4100
"""A relay refusal closes with 4100 + RelayErrorCode (4101…), beside the protocol
errors' own 4000…4009, so a client can tell them apart without parsing."""


class ZgodaError(Exception):
    """Root of every error zgoda raises on purpose."""


class CodeError(ZgodaError, ValueError):
    """The phone code as typed is not a valid code.

    `str(error)` is a sentence a dialog can show as-is; `reason` is a stable key
    a UI can translate.
    """

    reason = "invalid"


class CodeLengthError(CodeError):
    reason = "length"


class CodeCharacterError(CodeError):
    reason = "characters"


class ConfigError(ZgodaError, ValueError):
    """A configuration value is missing or malformed."""


class ProtocolError(ZgodaError):
    """Any violation of zgoda's protocol."""

    close_code = 4000


class LocalProtocolError(ProtocolError):
    """Our own side asked for something the protocol forbids (state, size, type)."""

    close_code = 4001


class RemoteProtocolError(ProtocolError):
    """The peer or the relay sent something the protocol forbids."""

    close_code = 4002


class DecodeError(RemoteProtocolError):
    """Bytes that are not a valid message: unknown type, wrong field, bad encoding."""

    close_code = 4003


class MessageTooLarge(DecodeError):
    """A message or a field over its limit; rejected before anything is allocated."""

    close_code = 4004


class UnexpectedMessage(RemoteProtocolError):
    """A well-formed message that the session's state does not allow."""

    close_code = 4005


class HandshakeError(RemoteProtocolError):
    """The PAKE exchange failed (malformed, reflected, or out of order)."""

    close_code = 4006


class WrongCodeError(HandshakeError):
    """Key confirmation failed: the two sides did not use the same code."""

    close_code = 4007


class ChannelError(RemoteProtocolError):
    """The sealed channel detected an attack or corruption; the session must end."""

    close_code = 4008


class TamperError(ChannelError):
    """A sealed box failed authentication (modified, forged, or wrong key)."""


class ReplayError(ChannelError):
    """A sealed box carried a counter already received."""


class GapError(ChannelError):
    """A sealed box carried a counter ahead of the next expected one."""


class ReflectionError(ChannelError):
    """A sealed box was one of our own, sent back to us."""


class TruncatedError(ChannelError):
    """A sealed box too short to contain its counter and tag."""


class AttestationError(RemoteProtocolError):
    """The relay's attestation is not signed by the pinned key, malformed, or expired."""

    close_code = 4009
