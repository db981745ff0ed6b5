"""Prometheus metrics of one relay process, on their own registry (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """Every number the relay exports; names follow Prometheus conventions."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "zgoda_relay_connections", "Open WebSocket connections", ["endpoint"], registry=r
        )
        self.sessions = Gauge("zgoda_relay_sessions", "Paired sessions now", registry=r)
        self.waiting = Gauge(
            "zgoda_relay_nameplates_waiting", "Allocated nameplates not yet claimed", registry=r
        )
        self.sessions_total = Counter(
            "zgoda_relay_sessions_paired", "Sessions paired since start", registry=r
        )
        self.bytes = Counter(
            "zgoda_relay_forwarded_bytes",
            "Bytes forwarded between the ends",
            ["direction"],
            registry=r,
        )
        self.claims = Counter(
            "zgoda_relay_claims", "Nameplate claims by result", ["result"], registry=r
        )
        self.allocations = Counter(
            "zgoda_relay_allocations", "Nameplate requests by result", ["result"], registry=r
        )
        self.logins = Counter("zgoda_relay_logins", "Logins by result", ["result"], registry=r)
        self.failures = Counter(
            "zgoda_relay_failures",
            "Connections ended by the relay for a fault, by reason",
            ["reason"],
            registry=r,
        )
        self.audit_rows = Counter(
            "zgoda_relay_audit_rows", "Audit rows committed", ["kind"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
