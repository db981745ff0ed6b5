"""The agent's link to the relay: a websockets client, TLS checked two ways.

With no `tls_pin` the relay's certificate is checked against the system store
(and its host name), like a browser would. With a `tls_pin` (the SHA-256 of the
certificate's DER) the certificate must be exactly that one; the system store is
then not consulted, so a self-signed relay certificate works and a certificate
from any CA other than the pinned one is refused. The pin is compared right
after the TLS and WebSocket handshakes, before the agent sends anything: the
only thing a wrong server could have seen is the request line `GET /ws/agent`.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl

from websockets.asyncio.client import ClientConnection, connect

from agent.config import AgentConfig
from protocol.limits import MAX_MESSAGE_SIZE


class TlsPinMismatch(Exception):
    """The relay presented a certificate other than the pinned one."""


OPEN_TIMEOUT = 10.0
"""Seconds for TCP, TLS and the WebSocket upgrade; a relay slower than this is down."""

KEEPALIVE_INTERVAL = 10.0
KEEPALIVE_TIMEOUT = 10.0
"""A WebSocket ping every 10 s, answered within 10 s: a link that died silently (cable
pulled, VPN gone, no RST) is noticed within ~20 s; the runner then reconnects and resumes
within the grace period, or ends the session once it has passed (`agent.runner`)."""


def ssl_context(config: AgentConfig) -> ssl.SSLContext | None:
    """The TLS context for the relay, or None for a plain ws:// development relay."""
    if not config.secure:
        return None
    if config.tls_pin is None:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The pin replaces CA and host name checks; check_pin() runs before any data is sent.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def certificate_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def check_pin(connection: ClientConnection, pin: str | None) -> None:
    """Raises:
    TlsPinMismatch: a pin is configured and the peer certificate differs (or is missing).
    """
    if pin is None:
        return
    ssl_object = connection.transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise TlsPinMismatch("the relay presented no certificate")
    actual = certificate_fingerprint(der)
    if not hmac.compare_digest(actual, pin):
        raise TlsPinMismatch(
            f"the relay's certificate (sha256 {actual[:16]}…) is not the pinned one"
        )


async def open_link(config: AgentConfig) -> ClientConnection:
    """Connect to `<relay>/ws/agent` and check the TLS pin; nothing is sent yet.

    Raises:
        OSError, TimeoutError: the relay cannot be reached.
        websockets.exceptions.InvalidURI, InvalidHandshake: it is not a zgoda relay endpoint
            (or the TLS certificate failed the system store's check: an `ssl.SSLError`,
            which is an OSError).
        TlsPinMismatch: the certificate is not the pinned one (the link is closed).
    """
    connection = await connect(
        config.agent_ws_url,
        ssl=ssl_context(config),
        max_size=MAX_MESSAGE_SIZE,
        open_timeout=OPEN_TIMEOUT,
        ping_interval=KEEPALIVE_INTERVAL,
        ping_timeout=KEEPALIVE_TIMEOUT,
        compression=None,  # frames are JPEG and the rest is sealed: nothing compresses
        user_agent_header="zgoda-agent",
    )
    try:
        check_pin(connection, config.tls_pin)
    except TlsPinMismatch:
        await connection.close()
        raise
    return connection
