"""SPAKE2 over the relay, then key confirmation both ways (DESIGN §2).

The console is SPAKE2 side A, the agent side B. Both identities carry the
protocol version and the nameplate, so a key from one session or version never
matches another. The shared key K never leaves this module's objects; from it
HKDF derives a confirmation key and one channel key per direction.

A wrong code does not fail SPAKE2 itself: it yields two different keys, which
the confirmation MACs expose as `WrongCodeError`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from protocol.codes import PhoneCode
from protocol.errors import HandshakeError, LocalProtocolError, WrongCodeError
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import Confirm, Pake, Party

KEY_SIZE = 32


def _label(*parts: str) -> bytes:
    return "/".join(("zgoda", str(PROTOCOL_VERSION), *parts)).encode()


def derive(key: bytes, nameplate: str, purpose: str) -> bytes:
    """HKDF-SHA256 of the PAKE key for one purpose of one session."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=_label(nameplate, purpose)
    ).derive(key)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The two channel keys of one end: what it seals with and what it opens with."""

    send: bytes
    receive: bytes
    role: Party


class Handshake:
    """One end's PAKE and key confirmation, sans-I/O.

    Call `start()` for our Pake message, `receive_pake()` with the peer's (it
    returns our Confirm), then `receive_confirm()` with the peer's (it returns
    the keys). Any other order raises LocalProtocolError.
    """

    def __init__(self, role: Party, code: PhoneCode) -> None:
        if role not in (Party.AGENT, Party.CONSOLE):
            raise LocalProtocolError("only the agent and the console hold a code")
        self.role = role
        self.nameplate = code.nameplate
        ids = {"idA": _label("console", code.nameplate), "idB": _label("agent", code.nameplate)}
        side = SPAKE2_A if role is Party.CONSOLE else SPAKE2_B
        self._spake = side(code.password, **ids)
        self._started = False
        self._key: bytes | None = None
        self.keys: SessionKeys | None = None

    def start(self) -> Pake:
        if self._started:
            raise LocalProtocolError("the PAKE was already started")
        self._started = True
        return Pake(body=self._spake.start())

    def receive_pake(self, message: Pake) -> Confirm:
        """Finish SPAKE2 with the peer's message.

        Raises:
            HandshakeError: the peer's message is malformed, from the wrong side, or ours reflected.
        """
        if not self._started or self._key is not None:
            raise LocalProtocolError("receive_pake() out of order")
        try:
            self._key = self._spake.finish(message.body)
        except (SPAKEError, ValueError, TypeError, AssertionError) as exc:
            raise HandshakeError(f"bad PAKE message ({type(exc).__name__})") from None
        return Confirm(mac=self._mac(self.role))

    def receive_confirm(self, message: Confirm) -> SessionKeys:
        """Check the peer's confirmation and derive the channel keys.

        Raises:
            WrongCodeError: the peer's MAC does not match: the two codes differ.
        """
        if self._key is None or self.keys is not None:
            raise LocalProtocolError("receive_confirm() out of order")
        peer = Party.AGENT if self.role is Party.CONSOLE else Party.CONSOLE
        if not hmac.compare_digest(message.mac, self._mac(peer)):
            raise WrongCodeError("the code does not match: check the digits and start again")
        to_agent = derive(self._key, self.nameplate, "console-to-agent")
        to_console = derive(self._key, self.nameplate, "agent-to-console")
        if self.role is Party.CONSOLE:
            self.keys = SessionKeys(send=to_agent, receive=to_console, role=self.role)
        else:
            self.keys = SessionKeys(send=to_console, receive=to_agent, role=self.role)
        self._key = None  # the channel keys are all that is needed from here
        return self.keys

    def _mac(self, party: Party) -> bytes:
        assert self._key is not None
        confirm_key = derive(self._key, self.nameplate, "confirm")
        return hmac.new(confirm_key, _label("confirm", party.name.lower()), hashlib.sha256).digest()
