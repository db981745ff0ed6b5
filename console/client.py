"""The consultant's client library: everything a consultant does, headless (no GUI imports).

async with ConsoleClient("https://relay.example:8443", tls_pin="ab12...") as client:
    await client.login("anna", "password", totp="123456")
    ticket = await client.create_ticket(caller_name="Jan Kowalski", company="ACME",
                                        phone="+48 600 100 200", problem="Outlook")
    session = await client.start_session(ticket)
    print("read this to the caller:", session.code)
    await session.wait_phase(Phase.CONTROLLING, Phase.VIEWING, timeout=180)
    session.type_text("hello")
    await session.end("solved")
"""

from __future__ import annotations

from typing import Any

from console.api import Login, RelayApi, RelayInfo, Ticket, TicketStatus
from console.errors import NotLoggedIn
from console.session import ConsoleSession, Phase
from protocol.messages import Rights

__all__ = ["ConsoleClient", "ConsoleSession", "Login", "Phase", "RelayInfo", "Ticket"]


class ConsoleClient:
    """A logged-in consultant on one relay: tickets and sessions."""

    def __init__(
        self, relay_url: str, *, tls_pin: str | None = None, token: str | None = None
    ) -> None:
        self.api = RelayApi(relay_url, tls_pin=tls_pin, token=token)
        self.display_name: str | None = None
        self.sessions: list[ConsoleSession] = []

    async def __aenter__(self) -> ConsoleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def relay_url(self) -> str:
        return self.api.url

    @property
    def logged_in(self) -> bool:
        return self.api.token is not None

    async def login(self, username: str, password: str, totp: str | None = None) -> Login:
        """Log in with password (and TOTP if the account has one).

        Raises:
            LoginFailed, RelayUnreachable, TlsPinMismatch, ApiError.
        """
        login = await self.api.login(username, password, totp)
        self.display_name = login.display_name
        return login

    async def use_token(self, token: str, display_name: str) -> None:
        """Resume with a token from an earlier login (scripts); checked on the next call."""
        self.api.token = token
        self.display_name = display_name

    async def logout(self) -> None:
        """Log out on the relay.

        Raises:
            the errors of the matching `RelayApi` call (NotLoggedIn, ApiError, RelayUnreachable...).
        """
        await self.api.logout()
        self.display_name = None

    async def relay_info(self) -> RelayInfo:
        """The relay's key, organisation, version and hours.

        Raises:
            the errors of the matching `RelayApi` call (NotLoggedIn, ApiError, RelayUnreachable...).
        """
        return await self.api.relay_info()

    async def create_ticket(
        self, *, caller_name: str, company: str, phone: str, problem: str
    ) -> Ticket:
        """Register a ticket for a caller. Raises ApiError (validation), NotLoggedIn."""
        return await self.api.create_ticket(
            caller_name=caller_name, company=company, phone=phone, problem=problem
        )

    async def tickets(self, status: TicketStatus = "open", *, mine: bool = True) -> list[Ticket]:
        """Tickets by status (the consultant's own unless `mine` is False).

        Raises:
            the errors of the matching `RelayApi` call (NotLoggedIn, ApiError, RelayUnreachable...).
        """
        return await self.api.list_tickets(status, mine=mine)

    async def ticket(self, ticket_id: str) -> Ticket:
        """One ticket by id.

        Raises:
            the errors of the matching `RelayApi` call (NotLoggedIn, ApiError, RelayUnreachable...).
        """
        return await self.api.get_ticket(ticket_id)

    async def close_ticket(self, ticket_id: str, resolution: str) -> Ticket | None:
        """Close a ticket with its resolution.

        Raises:
            the errors of the matching `RelayApi` call (NotLoggedIn, ApiError, RelayUnreachable...).
        """
        return await self.api.close_ticket(ticket_id, resolution)

    async def history(self, ticket_id: str) -> list[dict[str, Any]]:
        """The ticket's audit events, oldest first.

        Raises:
            the errors of the matching `RelayApi` call (NotLoggedIn, ApiError, RelayUnreachable...).
        """
        return await self.api.ticket_history(ticket_id)

    def new_session(self, ticket: Ticket, rights: Rights = Rights.CONTROL) -> ConsoleSession:
        """A session object for `ticket`, not yet connected (`await session.open()`).

        Raises:
            NotLoggedIn: no login yet.
        """
        if self.display_name is None or not self.logged_in:
            raise NotLoggedIn(401, "unauthorized", "Log in first.")
        session = ConsoleSession(self.api, ticket, consultant=self.display_name, rights=rights)
        self.sessions.append(session)
        return session

    async def start_session(
        self, ticket: Ticket | str, rights: Rights = Rights.CONTROL
    ) -> ConsoleSession:
        """Allocate a nameplate for the ticket; the session's `code` is the phone code.

        The consultant's name and the ticket's title are the ones the relay
        attests, so the user's prompt shows them.

        Raises:
            NotLoggedIn, SessionRefused, RelayUnreachable, TlsPinMismatch, TimeoutError.
        """
        if isinstance(ticket, str):
            ticket = await self.ticket(ticket)
        session = self.new_session(ticket, rights)
        await session.open()
        return session

    async def close(self) -> None:
        """End live sessions, close the connections (the token stays valid until it expires)."""
        for session in self.sessions:
            await session.close()
        self.sessions.clear()
        await self.api.close()
