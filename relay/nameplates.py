"""The nameplate directory: which 3-digit nameplate routes to which waiting console.

A nameplate is single use: `claim` removes it, whoever claims it. It expires
unclaimed after the TTL, and its console leaving burns it. Numbers are drawn
at random (never sequential) so that one seen nameplate says nothing of the next.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Generic, TypeVar

from protocol.limits import NAMEPLATE_DIGITS

T = TypeVar("T")


class NameplatesExhausted(Exception):
    """Every nameplate is in use; try again when one is claimed or expires."""


@dataclass(slots=True)
class Allocation(Generic[T]):
    nameplate: str
    owner: T
    expires_at: float


class NameplateDirectory(Generic[T]):
    """Live nameplates, each owned by the console end that allocated it."""

    def __init__(self, digits: int = NAMEPLATE_DIGITS) -> None:
        self.size = 10**digits
        self.digits = digits
        self._live: dict[str, Allocation[T]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def allocate(self, owner: T, now: float, ttl: float) -> Allocation[T]:
        """Bind a random free nameplate to `owner` until `now + ttl`.

        Raises:
            NameplatesExhausted: all of them are live.
        """
        self.expire(now)
        if len(self._live) >= self.size:
            raise NameplatesExhausted
        # Random probing is fast while the directory is sparse; past half full,
        # pick among the free numbers directly so allocation stays bounded.
        if len(self._live) < self.size // 2:
            while True:
                nameplate = f"{secrets.randbelow(self.size):0{self.digits}d}"
                if nameplate not in self._live:
                    break
        else:
            free = [n for n in range(self.size) if f"{n:0{self.digits}d}" not in self._live]
            nameplate = f"{secrets.choice(free):0{self.digits}d}"
        allocation = Allocation(nameplate, owner, now + ttl)
        self._live[nameplate] = allocation
        return allocation

    def claim(self, nameplate: str, now: float) -> Allocation[T] | None:
        """Take a live nameplate out of the directory; None if unknown, used or expired."""
        allocation = self._live.pop(nameplate, None)
        if allocation is None or allocation.expires_at <= now:
            return None
        return allocation

    def holds(self, nameplate: str, owner: T) -> bool:
        """Whether `owner`'s allocation of `nameplate` is still live (not claimed or burnt)."""
        allocation = self._live.get(nameplate)
        return allocation is not None and allocation.owner is owner

    def release(self, nameplate: str, owner: T) -> bool:
        """Burn `owner`'s nameplate (its console left or aborted). True if it was live."""
        allocation = self._live.get(nameplate)
        if allocation is not None and allocation.owner is owner:
            del self._live[nameplate]
            return True
        return False

    def expire(self, now: float) -> list[Allocation[T]]:
        """Remove and return every allocation past its expiry."""
        gone = [a for a in self._live.values() if a.expires_at <= now]
        for allocation in gone:
            del self._live[allocation.nameplate]
        return gone
