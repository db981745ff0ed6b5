"""Pure parts of the relay, without a process: config, hours, limits, nameplates, store."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from protocol.errors import ConfigError
from relay import accounts
from relay.config import load_config
from relay.hours import BusinessHours, easter_sunday, polish_holidays
from relay.nameplates import NameplateDirectory, NameplatesExhausted
from relay.ratelimit import SlidingWindow
from relay.store import SQLiteStore, StoreError

WARSAW = ZoneInfo("Europe/Warsaw")


# -- config


def test_config_layers_defaults_file_env_and_command_line(tmp_path: Path) -> None:
    (tmp_path / "relay.toml").write_text('org = "From File"\nport = 9000\nhours = "always"\n')
    config = load_config(data_dir=tmp_path, env={})
    assert (config.org, config.port, config.hours) == ("From File", 9000, "always")
    config = load_config(data_dir=tmp_path, env={"ZGODA_RELAY_PORT": "9100"})
    assert (config.org, config.port) == ("From File", 9100)
    config = load_config(
        data_dir=tmp_path, env={"ZGODA_RELAY_PORT": "9100"}, overrides={"port": 9200}
    )
    assert config.port == 9200
    assert config.config_file == tmp_path / "relay.toml"


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("colour = 'blue'\n", {}),
        ("port = 'eighty'\n", {}),
        ("port = 70000\n", {}),
        ("log_format = 'xml'\n", {}),
        ("tls_cert = '/a.pem'\n", {}),
        ("not toml at all [", {}),
        ("", {"ZGODA_RELAY_DEV_TLS": "maybe"}),
        ("", {"ZGODA_RELAY_CLAIMS_PER_MINUTE": "0"}),
    ],
)
def test_config_refuses_bad_values_with_a_config_error(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    (tmp_path / "relay.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_config(data_dir=tmp_path, env=env)


def test_config_without_a_data_dir_is_an_error() -> None:
    with pytest.raises(ConfigError, match="data dir"):
        load_config(data_dir=None, env={})


def test_a_non_loopback_bind_needs_tls_or_insecure(tmp_path: Path) -> None:
    for bind in ("127.0.0.1", "::1", "localhost"):
        load_config(data_dir=tmp_path, env={}, overrides={"bind": bind}).check_exposure()
    exposed = load_config(data_dir=tmp_path, env={}, overrides={"bind": "0.0.0.0"})
    with pytest.raises(ConfigError, match="without TLS"):
        exposed.check_exposure()
    for extra in ({"insecure": True}, {"dev_tls": True}):
        load_config(
            data_dir=tmp_path, env={}, overrides={"bind": "0.0.0.0", **extra}
        ).check_exposure()


# -- business hours


def test_easter_dates_are_right() -> None:
    assert easter_sunday(2024) == datetime.date(2024, 3, 31)
    assert easter_sunday(2025) == datetime.date(2025, 4, 20)
    assert easter_sunday(2026) == datetime.date(2026, 4, 5)
    assert easter_sunday(2027) == datetime.date(2027, 3, 28)


def test_polish_holidays_2026() -> None:
    expected = {
        (1, 1), (1, 6), (4, 5), (4, 6), (5, 1), (5, 3), (5, 24), (6, 4),
        (8, 15), (11, 1), (11, 11), (12, 24), (12, 25), (12, 26),
    }  # fmt: skip
    assert {(d.month, d.day) for d in polish_holidays(2026)} == expected
    assert datetime.date(2024, 12, 24) not in polish_holidays(2024)  # a holiday from 2025


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=WARSAW)


def test_default_hours_are_weekdays_eight_to_six_in_warsaw_without_holidays() -> None:
    hours = BusinessHours.parse("Mon-Fri 08:00-18:00", "Europe/Warsaw", "PL")
    assert hours.is_open(at("2026-11-26T08:00"))  # Thursday
    assert hours.is_open(at("2026-11-26T17:59"))
    assert not hours.is_open(at("2026-11-26T07:59"))
    assert not hours.is_open(at("2026-11-26T18:00"))
    assert not hours.is_open(at("2026-11-28T10:00"))  # Saturday
    assert not hours.is_open(at("2026-11-11T10:00"))  # Independence Day, a Wednesday
    assert not hours.is_open(at("2026-06-04T10:00"))  # Corpus Christi
    # the zone matters: 07:30 UTC in winter is 08:30 in Warsaw
    assert hours.is_open(datetime.datetime(2026, 11, 26, 7, 30, tzinfo=datetime.UTC))
    assert "Mon–Fri 08:00–18:00" in hours.refusal()
    without = BusinessHours.parse("Mon-Fri 08:00-18:00", "Europe/Warsaw", "none")
    assert without.is_open(at("2026-11-11T10:00"))
    assert BusinessHours.parse("always", "Europe/Warsaw", "PL").is_open(at("2026-12-25T03:00"))


@pytest.mark.parametrize(
    ("spec", "zone"),
    [
        ("weekdays", "Europe/Warsaw"),
        ("Mon-Fri 18:00-08:00", "Europe/Warsaw"),
        ("Mon-Fry 08:00-18:00", "Europe/Warsaw"),
        ("Mon-Fri 25:00-26:00", "Europe/Warsaw"),
        ("Mon-Fri 08:00-18:00", "Mars/Olympus"),
    ],
)
def test_bad_hours_are_a_config_error(spec: str, zone: str) -> None:
    with pytest.raises(ConfigError):
        BusinessHours.parse(spec, zone, "PL")


# -- rate limits and nameplates


def test_sliding_window_allows_the_limit_then_says_how_long_to_wait() -> None:
    window = SlidingWindow(3, 60.0)
    for t in (0.0, 1.0, 2.0):
        assert window.retry_after("ip", t) == 0
        window.record("ip", t)
    assert window.retry_after("ip", 3.0) == pytest.approx(57.0)
    assert window.retry_after("other", 3.0) == 0
    assert window.retry_after("ip", 60.5) == 0  # the first event left the window


def test_nameplates_are_single_use_and_expire() -> None:
    directory: NameplateDirectory[str] = NameplateDirectory()
    first = directory.allocate("a", now=0.0, ttl=600.0)
    assert len(first.nameplate) == 3
    assert directory.holds(first.nameplate, "a")
    assert not directory.holds(first.nameplate, "someone else")
    claimed = directory.claim(first.nameplate, now=1.0)
    assert claimed is not None
    assert claimed.owner == "a"
    assert directory.claim(first.nameplate, now=1.0) is None
    assert not directory.holds(first.nameplate, "a")
    late = directory.allocate("b", now=0.0, ttl=600.0)
    assert directory.claim(late.nameplate, now=600.0) is None
    gone = directory.allocate("c", now=0.0, ttl=10.0)
    assert [a.owner for a in directory.expire(11.0)] == ["c"]
    assert directory.claim(gone.nameplate, now=11.0) is None


def test_nameplates_run_out_at_a_thousand_and_are_all_distinct() -> None:
    directory: NameplateDirectory[int] = NameplateDirectory()
    numbers = {directory.allocate(i, now=0.0, ttl=60.0).nameplate for i in range(1000)}
    assert len(numbers) == 1000
    with pytest.raises(NameplatesExhausted):
        directory.allocate(1000, now=0.0, ttl=60.0)
    assert len(directory.expire(61.0)) == 1000


# -- accounts and store


def test_passwords_are_argon2id_and_checked() -> None:
    hashed = accounts.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert accounts.verify_password(hashed, "correct horse battery")
    assert not accounts.verify_password(hashed, "wrong horse battery")
    assert not accounts.verify_password("not a hash", "whatever")
    with pytest.raises(ValueError, match="characters"):
        accounts.hash_password("short")


def test_totp_accepts_a_code_once_and_within_one_step_of_drift() -> None:
    secret = accounts.new_totp_secret()
    now = 1_800_000_000.0
    code = accounts.totp_code(secret, now)
    step = accounts.check_totp(secret, code, now, last_step=-1)
    assert step == int(now) // 30
    assert accounts.check_totp(secret, code, now, last_step=step) is None  # replay
    assert accounts.check_totp(secret, code, now + 30, last_step=-1) == step  # drift
    assert accounts.check_totp(secret, code, now + 90, last_step=-1) is None
    assert accounts.check_totp(secret, "12345x", now, last_step=-1) is None
    assert "secret=" in accounts.totp_uri(secret, "anna", "Example")


def test_store_migrates_once_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    assert store.schema_version == 1
    store.close()
    store = SQLiteStore(tmp_path)  # idempotent
    store.close()
    db = sqlite3.connect(tmp_path / "relay.sqlite3")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(tmp_path)


def test_lockout_doubles_with_each_lockout_up_to_the_cap(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    try:
        c = store.add_consultant("anna", "Anna", "hash", None)
        ends = []
        for round_ in range(4):
            for _ in range(3):
                until = store.record_login_failure(c.id, 3, 30.0, 100.0, now=1000.0 * round_)
            ends.append(until - 1000.0 * round_)
        assert ends == [30.0, 60.0, 100.0, 100.0]
        store.record_login_success(c.id, None)
        again = [store.record_login_failure(c.id, 3, 30.0, 100.0, now=0.0) for _ in range(3)]
        assert again[-1] == 30.0
        with pytest.raises(StoreError):
            store.add_consultant("anna", "Anna", "hash", None)
    finally:
        store.close()


def test_audit_rows_cannot_be_updated_or_deleted_through_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    store.append_audit("login", actor="anna")
    store.close()
    db = sqlite3.connect(tmp_path / "relay.sqlite3")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit")
    finally:
        db.close()
