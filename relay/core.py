"""The state one relay process shares between its HTTP API and WebSocket endpoints."""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.attestation import public_key_text
from relay.config import RelayConfig
from relay.hours import BusinessHours
from relay.metrics import Metrics
from relay.nameplates import NameplateDirectory
from relay.ratelimit import SlidingWindow
from relay.store import AuditRow, Store

if TYPE_CHECKING:
    from relay.sessions import End

log = logging.getLogger("zgoda.relay")
R = TypeVar("R")


class Relay:
    """Config, storage, keys, limits and every live connection of one relay."""

    def __init__(
        self, config: RelayConfig, store: Store, key: Ed25519PrivateKey, metrics: Metrics
    ) -> None:
        self.config = config
        self.store = store
        self.key = key
        self.public_key = public_key_text(key.public_key())
        self.metrics = metrics
        self.hours = BusinessHours.parse(config.hours, config.timezone, config.holidays)
        # One thread owns the database: SQLite connections are not for sharing,
        # and one writer keeps audit rows in the order they were appended.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zgoda-db")
        self.directory: NameplateDirectory[End] = NameplateDirectory()
        self.ends: set[End] = set()
        self.connections_per_ip: Counter[str] = Counter()
        self.failed_claims_per_ip = SlidingWindow(config.claims_per_ip_per_minute)
        self.failed_claims_all = SlidingWindow(config.claims_per_minute)
        self.claims_per_ip = SlidingWindow(config.claim_attempts_per_ip_per_minute)
        self.logins_per_ip = SlidingWindow(config.logins_per_ip_per_minute)
        self.shutting_down = False
        self._alarm_until = 0.0
        self.session_counter = 0

    # -- time

    @staticmethod
    def now() -> float:
        return time.time()

    def local_moment(self) -> datetime.datetime:
        """Now, or the fixed `hours_clock` a test set, as an aware datetime."""
        if self.config.hours_clock:
            moment = datetime.datetime.fromisoformat(self.config.hours_clock)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.hours.zone)
            return moment
        return datetime.datetime.now(datetime.UTC)

    def open_now(self) -> bool:
        return self.hours.is_open(self.local_moment())

    # -- storage

    async def db(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run one store call on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))

    async def audit(self, kind: str, **fields: Any) -> AuditRow:
        """Append an audit row and wait until it is committed durably."""
        row = await self.db(self.store.append_audit, kind, **fields)
        self.metrics.audit_rows.labels(kind).inc()
        return row

    def close_storage(self) -> None:
        self._db.shutdown(wait=True)
        self.store.close()

    # -- guessing alarm

    def alarm(self, ip: str, retry_after: float) -> None:
        """Log one ALARM line per minute while claims fail faster than the limits allow."""
        now = time.monotonic()
        if now >= self._alarm_until:
            self._alarm_until = now + 60.0
            log.warning(
                "ALARM nameplate guessing suspected: failed claims over the limit "
                "(last from %s); claims refused for %.0f s",
                ip,
                retry_after,
            )
