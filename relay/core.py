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
from relay.store import AuditRow, StorageFull, Store

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
        self._full_logged_until = 0.0  # monotonic: one STORAGE FULL line per minute
        self.storage_full_since = 0.0  # wall clock of the first refused write; 0: writable
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
        """Run one store call on the database thread.

        Raises what the store raises; StorageFull is logged for the admin first.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._db, functools.partial(fn, *args, **kwargs))
        except StorageFull as exc:
            self.storage_full(exc)
            raise

    async def audit(self, kind: str, **fields: Any) -> AuditRow:
        """Append an audit row and wait until it is committed durably.

        Raises StorageFull when the disk is full (no row was written).
        """
        row = await self.db(self.store.append_audit, kind, **fields)
        self.metrics.audit_rows.labels(kind).inc()
        if self.storage_full_since:
            log.warning(
                "storage writable again: the audit log accepts rows (it refused writes for %.0f s)",
                self.now() - self.storage_full_since,
            )
            self.storage_full_since = 0.0
        return row

    def storage_full(self, exc: StorageFull) -> None:
        """Note a write refused for want of space; log one ERROR line per minute (the
        connections refused for it are counted where they are refused)."""
        if not self.storage_full_since:
            self.storage_full_since = self.now()
        now = time.monotonic()
        if now >= self._full_logged_until:
            self._full_logged_until = now + 60.0
            log.error(
                "STORAGE FULL: the relay cannot write to its database (%s); new sessions, "
                "tickets and logins are refused until space is freed on its data dir",
                exc,
            )

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
