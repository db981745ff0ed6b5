"""Two protocol ends piped together in memory, with the relay's routing in between.

This is the pair helper of the protocol tests (STYLE §8) and the engine of the
in-process demo. `Pair.relay_*` does in a few lines what the real relay
(`relay/`) does over WebSockets: answer the allocation with a signed
attestation, accept the claim, announce the peers, forward PAKE and sealed
messages without opening them, keep the agent's audit receipts. It is no relay:
no sockets, no rate limits, no storage. It exists so that protocol rules can be
tested without I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import attestation as attest
from protocol.codec import decode_envelope, encode
from protocol.codes import PhoneCode, new_secret
from protocol.connection import AgentConnection, ConsoleConnection, Event
from protocol.limits import NAMEPLATE_TTL_SECONDS
from protocol.messages import (
    Abort,
    AllocateNameplate,
    AuditReport,
    Claimed,
    ClaimNameplate,
    Confirm,
    Message,
    NameplateAllocated,
    Pake,
    PeerAway,
    PeerJoined,
    PeerReturned,
    Resume,
    Resumed,
    Rewind,
    Rights,
    Sealed,
    SessionOpened,
)

_CONSOLE_TOKEN = b"console-resume-token"
_AGENT_TOKEN = b"agent-resume-token!!"


@dataclass
class Pair:
    """A console and an agent joined by an in-memory relay.

    `agent_code` lets a test make the user type a different code from the one
    read over the phone.
    """

    consultant: str = "Anna Nowak"
    ticket_id: str = "HD-1042"
    ticket_title: str = "Outlook does not start"
    org: str = "Example Sp. z o.o."
    rights: Rights = Rights.CONTROL
    relay_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    console: ConsoleConnection = field(init=False)
    agent: AgentConnection | None = field(init=False, default=None)
    audit: list[AuditReport] = field(init=False, default_factory=list)
    aborts: list[Abort] = field(init=False, default_factory=list)
    wire: list[tuple[str, Message]] = field(init=False, default_factory=list)
    console_events: list[Event] = field(init=False, default_factory=list)
    agent_events: list[Event] = field(init=False, default_factory=list)
    down: set[str] = field(init=False, default_factory=set)
    lost: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.console = ConsoleConnection(
            ticket_id=self.ticket_id,
            consultant=self.consultant,
            ticket_title=self.ticket_title,
            rights=self.rights,
            secret=new_secret(),
        )
        self.pump()

    # -- the relay's routing

    def pump(self) -> None:
        """Deliver everything queued, both ways, until nothing moves."""
        moved = True
        while moved:
            moved = False
            for data in self.console.data_to_send():
                moved = True
                self._from_console(decode_envelope(data), data)
            if self.agent is not None:
                for data in self.agent.data_to_send():
                    moved = True
                    self._from_agent(decode_envelope(data), data)
            self.console_events += self.console.events_received()
            if self.agent is not None:
                self.agent_events += self.agent.events_received()

    def _from_console(self, message: Message, data: bytes) -> None:
        self.wire.append(("console", message))
        if isinstance(message, AllocateNameplate):
            nameplate = "482"
            expires_at = time.time() + NAMEPLATE_TTL_SECONDS
            statement = attest.Attestation(
                nameplate=nameplate,
                consultant=self.consultant,
                ticket_id=message.ticket_id,
                ticket_title=self.ticket_title,
                org=self.org,
                expires_at=expires_at,
            )
            reply = NameplateAllocated(
                nameplate=nameplate,
                expires_at=expires_at,
                attestation=attest.sign(statement, self.relay_key),
            )
            self.console.receive_data(encode(reply))
        elif isinstance(message, Pake | Confirm | Sealed | Rewind) and self.agent is not None:
            self._deliver("agent", data)
        elif isinstance(message, Resume):
            self._resume("console", message)
        elif isinstance(message, Abort):
            self.aborts.append(message)

    def _from_agent(self, message: Message, data: bytes) -> None:
        self.wire.append(("agent", message))
        assert self.agent is not None
        if isinstance(message, ClaimNameplate):
            self.agent.receive_data(encode(Claimed(expires_at=time.time() + 60)))
            for end, token in ((self.console, _CONSOLE_TOKEN), (self.agent, _AGENT_TOKEN)):
                end.receive_data(encode(SessionOpened(session_id="s-1", resume_token=token)))
                end.receive_data(encode(PeerJoined()))
        elif isinstance(message, Pake | Confirm | Sealed | Rewind):
            self._deliver("console", data)
        elif isinstance(message, Resume):
            self._resume("agent", message)
        elif isinstance(message, AuditReport):
            self.audit.append(message)
        elif isinstance(message, Abort):
            self.aborts.append(message)

    def _end(self, name: str) -> ConsoleConnection | AgentConnection:
        end = self.console if name == "console" else self.agent
        assert end is not None
        return end

    def _deliver(self, name: str, data: bytes) -> None:
        if name in self.down:
            self.lost += 1  # written into a dead link
        else:
            self._end(name).receive_data(data)

    def _resume(self, name: str, message: Resume) -> None:
        token = _CONSOLE_TOKEN if name == "console" else _AGENT_TOKEN
        if message.token != token or message.session_id != "s-1":
            return
        self.down.discard(name)
        other = "agent" if name == "console" else "console"
        self._end(name).receive_data(encode(Resumed()))
        self._deliver(other, encode(PeerReturned()))

    # -- links that drop

    def drop(self, name: str) -> bool:
        """`name`'s link dies: what is in flight to it is lost; the other end is told."""
        self.down.add(name)
        resumable = self._end(name).link_lost()
        other = "agent" if name == "console" else "console"
        self._deliver(other, encode(PeerAway(grace_seconds=30.0)))
        self.pump()
        return resumable

    def restore(self, name: str) -> None:
        """`name` reconnects and asks to resume."""
        self._end(name).resume()
        self.pump()

    # -- the user's side

    @property
    def code(self) -> PhoneCode:
        assert self.console.code is not None
        return self.console.code

    def user_connects(self, code: PhoneCode | None = None, *, org: str | None = None) -> None:
        """The user typed the code and clicked Connect: only now does an agent end exist."""
        self.agent = AgentConnection(
            code=code or self.code,
            relay_key=self.relay_key.public_key(),
            org=org if org is not None else self.org,
        )
        self.pump()

    def user_allows(self, rights: Rights | None = None) -> None:
        assert self.agent is not None
        self.agent.grant(rights or self.rights)
        self.pump()

    def consented(self, rights: Rights | None = None) -> AgentConnection:
        """Run the whole opening: code, PAKE, request, the user's Allow."""
        self.user_connects()
        self.user_allows(rights)
        assert self.agent is not None
        return self.agent
