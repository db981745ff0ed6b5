"""Business hours: when the relay hands out new nameplates (DESIGN §1, promise 4).

The FAQ fixes Mon–Fri 8:00–18:00, Polish public holidays excluded, in
Europe/Warsaw time. Sessions already running are never cut at closing time;
only new nameplates are refused.

Polish public holidays are computed here (they follow from fixed dates and
Easter) rather than taken from a package: the list is short, changes by law
rarely (Christmas Eve became a holiday from 2025), and a test pins each one.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(
    r"^\s*(?P<d1>[a-z]{3})(?:\s*-\s*(?P<d2>[a-z]{3}))?\s+"
    r"(?P<h1>\d{1,2}):(?P<m1>\d{2})\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})\s*$"
)


def easter_sunday(year: int) -> datetime.date:
    """Gregorian Easter (the anonymous Gregorian algorithm, "Meeus/Jones/Butcher")."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return datetime.date(year, month, day + 1)


@lru_cache(maxsize=64)
def polish_holidays(year: int) -> frozenset[datetime.date]:
    """Statutory non-working days in Poland (ustawa o dniach wolnych od pracy)."""
    easter = easter_sunday(year)
    fixed = [(1, 1), (1, 6), (5, 1), (5, 3), (8, 15), (11, 1), (11, 11), (12, 25), (12, 26)]
    if year >= 2025:
        fixed.append((12, 24))  # Wigilia, a public holiday from 2025
    days = {datetime.date(year, m, d) for m, d in fixed}
    days |= {
        easter,
        easter + datetime.timedelta(days=1),  # Easter Monday
        easter + datetime.timedelta(days=49),  # Pentecost (a Sunday)
        easter + datetime.timedelta(days=60),  # Corpus Christi
    }
    return frozenset(days)


@dataclass(frozen=True)
class BusinessHours:
    """A weekly window in one time zone, minus holidays. `always` disables the check."""

    always: bool
    days: frozenset[int]  # 0 = Monday
    opens: datetime.time
    closes: datetime.time
    zone: ZoneInfo
    holidays: str  # "PL" or "none"
    spec: str

    @classmethod
    def parse(cls, spec: str, timezone: str, holidays: str) -> BusinessHours:
        """Parse `always` or `Mon-Fri 08:00-18:00`. Raises ConfigError."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {timezone!r}") from None
        midnight = datetime.time(0, 0)
        if spec.strip().lower() == "always":
            return cls(True, frozenset(range(7)), midnight, midnight, zone, holidays, "always")
        match = _SPEC.match(spec.lower())
        if match is None:
            raise ConfigError(f"hours {spec!r}: expected 'always' or like 'Mon-Fri 08:00-18:00'")
        try:
            first = DAYS.index(match["d1"])
            last = DAYS.index(match["d2"] or match["d1"])
            opens = datetime.time(int(match["h1"]), int(match["m1"]))
            closes = datetime.time(int(match["h2"]), int(match["m2"]))
        except ValueError:
            raise ConfigError(f"hours {spec!r}: unknown day or impossible time") from None
        if closes <= opens:
            raise ConfigError(f"hours {spec!r}: closing time must be after opening time")
        days = range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)]
        return cls(False, frozenset(days), opens, closes, zone, holidays, spec)

    def is_open(self, moment: datetime.datetime) -> bool:
        """Whether new sessions may start at `moment` (an aware datetime)."""
        if self.always:
            return True
        local = moment.astimezone(self.zone)
        if local.weekday() not in self.days:
            return False
        if self.holidays == "PL" and local.date() in polish_holidays(local.year):
            return False
        return self.opens <= local.time().replace(tzinfo=None) < self.closes

    def describe(self) -> str:
        """The hours as a sentence the console can show."""
        if self.always:
            return "always open"
        days = sorted(self.days)
        names = [DAYS[d].capitalize() for d in days]
        span = f"{names[0]}–{names[-1]}" if len(names) > 1 else names[0]
        text = f"{span} {self.opens:%H:%M}–{self.closes:%H:%M} ({self.zone.key})"
        if self.holidays == "PL":
            text += ", Polish public holidays excluded"
        return text

    def refusal(self) -> str:
        """The sentence a consultant sees when a nameplate is refused out of hours."""
        return f"Remote sessions can be started only during business hours: {self.describe()}."
