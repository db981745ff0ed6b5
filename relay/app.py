"""One aiohttp application: the HTTP API and both WebSocket endpoints; and `serve()`."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys

from aiohttp import web

from relay.api import MAX_BODY, RELAY_APP_KEY, add_routes, error_middleware
from relay.config import RelayConfig
from relay.core import Relay
from relay.keys import (
    certificate_fingerprint,
    ensure_dev_certificate,
    load_or_create_relay_key,
    server_ssl_context,
)
from relay.metrics import Metrics
from relay.sessions import Endpoints
from relay.store import SQLiteStore

log = logging.getLogger("zgoda.relay")
ENDPOINTS_APP_KEY: web.AppKey[Endpoints] = web.AppKey("endpoints", Endpoints)


def _write_frames_whole() -> None:
    """Make aiohttp write each WebSocket frame with one send() instead of two.

    aiohttp writes a frame over `MSG_SIZE` (16 KiB) as two `transport.write`
    calls, header then payload, which is two send() syscalls and a 10-byte TCP
    segment per forwarded 64 KiB message. Joining them costs one 64 KiB copy
    and measured +15-20 % relay throughput (bench/relay.py, A/B in one run).
    The constant is private to aiohttp (pinned <4 in pyproject.toml); if it is
    gone, the relay simply keeps aiohttp's default behaviour.
    """
    try:
        from aiohttp._websocket import writer
    except ImportError:  # pragma: no cover - a future aiohttp
        return
    if isinstance(getattr(writer, "MSG_SIZE", None), int):
        writer.MSG_SIZE = 1 << 62  # type: ignore[attr-defined]


def build_app(relay: Relay) -> web.Application:
    """The relay's aiohttp application (routes, middleware, WebSocket endpoints)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[RELAY_APP_KEY] = relay
    endpoints = Endpoints(relay)
    app[ENDPOINTS_APP_KEY] = endpoints
    add_routes(app)
    app.router.add_get("/ws/console", endpoints.console)
    app.router.add_get("/ws/agent", endpoints.agent)
    return app


def _tls_context(config: RelayConfig) -> tuple[ssl.SSLContext | None, str]:
    if config.dev_tls:
        hosts = [] if config.bind in ("0.0.0.0", "::", "") else [config.bind]  # noqa: S104
        cert, key = ensure_dev_certificate(config.data_dir, hosts)
    elif config.tls_cert is not None and config.tls_key is not None:
        cert, key = config.tls_cert, config.tls_key
    else:
        return None, ""
    return server_ssl_context(cert, key), certificate_fingerprint(cert.read_bytes())


async def serve(config: RelayConfig) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully.

    Raises:
        ConfigError: exposure without TLS, unreadable TLS files or relay key.
        OSError: the address cannot be bound.
    """
    config.check_exposure()
    _write_frames_whole()
    context, fingerprint = _tls_context(config)
    key = load_or_create_relay_key(config.data_dir)
    store = SQLiteStore(config.data_dir)
    relay = Relay(config, store, key, Metrics())
    app = build_app(relay)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=1.0,
        # a TCP connection that sends no request (or goes quiet between requests)
        # is closed after this long, so idle sockets cannot pile up
        keepalive_timeout=config.handshake_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.bind, config.port, ssl_context=context, backlog=1024)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        relay.close_storage()
        raise
    endpoints = app[ENDPOINTS_APP_KEY]
    endpoints.start()
    await relay.audit("relay.started", detail={"bind": config.bind, "tls": bool(context)})
    host, port = _bound_address(runner)
    scheme = "https" if context else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"zgoda relay listening on {scheme}://{shown}:{port}", flush=True)
    if fingerprint:
        print(f"zgoda relay tls sha256 fingerprint {fingerprint}", flush=True)
    log.info(
        "relay key %s, org %r, hours: %s", relay.public_key, config.org, relay.hours.describe()
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: telling every connected end")
        await endpoints.stop()
        await relay.audit("relay.stopped")
        await runner.cleanup()
        relay.close_storage()
        log.info("stopped")


def _bound_address(runner: web.AppRunner) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return str(address[0]), int(address[1])
    return "?", 0  # pragma: no cover - a TCPSite always has a socket


def run(config: RelayConfig) -> int:
    """Blocking entry point for `zgoda relay serve`; returns the exit status."""
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"zgoda relay: cannot listen on {config.bind}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
