"""The tray app's pieces that need no display: texts, how endings are worded, the
language choice, one instance per user, the secure-desktop guard, the command line."""

from __future__ import annotations

import os
import stat
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import FakeRegistry
from agent.frontend import SessionOutcome
from agent.platform.base import MonitorInfo, PlatformError
from agent.runner import describe_end
from agent.ui.desktop import (
    KNOCK,
    KNOCK_PREFIX,
    KNOCK_TIMEOUT,
    STALE_KNOCK,
    SecureDesktopGuard,
    SingleInstance,
    runtime_dir,
)
from agent.ui.strings import (
    TEXTS,
    Strings,
    configured_language,
    describe_outcome,
    pick_language,
    relay_code_of,
    system_language,
)
from protocol.connection import SessionEnded
from protocol.errors import AttestationError
from protocol.messages import EndReason, Party, RelayErrorCode
from relay.hours import BusinessHours
from tests.support.relay import REPO

EN, PL = Strings("en"), Strings("pl")


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_every_text_exists_in_both_languages_with_the_same_blanks(key: str) -> None:
    pair = TEXTS[key]
    assert set(pair) == {"pl", "en"}
    assert pair["pl"], key
    if key.startswith("code.error."):
        assert pair["en"] == ""  # English shows the protocol's own sentence
    else:
        assert pair["en"] and fields(pair["pl"]) == fields(pair["en"])


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        Strings("de")


# ------------------------------------------------------------------ how endings read


def outcome(ended: SessionEnded) -> SessionOutcome:
    """As the runner builds it (agent.runner._finish)."""
    return SessionOutcome(
        by=ended.by, reason=ended.reason, message=describe_end(ended), detail=ended.detail
    )


# The relay's own sentences (relay/sessions.py, relay/hours.py) and the runner's.
NOT_VALID = (
    "This code is not valid (mistyped, already used or expired); ask the consultant for a new one."
)
EXPIRED = "The session code expired unused; start a new session."
UNREACHABLE = "it cannot be reached; check the network and try again"
HOURS = BusinessHours.parse("mon-fri 08:00-16:00", "Europe/Warsaw", "none").refusal()


@pytest.mark.parametrize(
    ("ended", "key"),
    [
        (SessionEnded(Party.AGENT, EndReason.WRONG_CODE, "x"), "end.wrong_code"),
        (SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, NOT_VALID), "end.expired_code"),
        (SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, EXPIRED), "end.expired_code"),
        (SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, UNREACHABLE), "end.unreachable"),
        (SessionEnded(Party.AGENT, EndReason.USER_ENDED, ""), "end.user"),
        (SessionEnded(Party.CONSOLE, EndReason.USER_ENDED, ""), "end.consultant"),
        (SessionEnded(Party.CONSOLE, EndReason.CONSULTANT_ENDED, ""), "end.consultant"),
        (SessionEnded(Party.AGENT, EndReason.DENIED, "user_denied"), "end.denied"),
        (SessionEnded(Party.AGENT, EndReason.DENIED, "timeout"), "end.timeout"),
        (SessionEnded(Party.RELAY, EndReason.PEER_LOST, "left"), "end.lost"),
    ],
)
@pytest.mark.parametrize("strings", [EN, PL], ids=["en", "pl"])
def test_each_ending_has_its_own_sentence(ended: SessionEnded, key: str, strings: Strings) -> None:
    assert describe_outcome(outcome(ended), strings) == strings.get(key)


def test_outside_hours_says_so_and_keeps_the_relays_hours() -> None:
    ended = SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, HOURS)
    assert describe_outcome(outcome(ended), PL) == PL.get("end.outside_hours", detail=HOURS)


def test_an_unverifiable_request_says_so() -> None:
    ended = SessionEnded(
        Party.AGENT, EndReason.DENIED, "attestation_invalid", error=AttestationError("bad")
    )
    assert describe_outcome(outcome(ended), PL) == PL.get("end.unverified")


def test_any_other_refusal_shows_the_relays_sentence() -> None:
    ended = SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, "Too many attempts; wait.")
    assert describe_outcome(outcome(ended), EN) == EN.get(
        "end.refused", detail="Too many attempts; wait."
    )


@dataclass(frozen=True, slots=True)
class OutcomeWithCode(SessionOutcome):
    """The outcome as the engine builds it once it passes on SessionEnded.relay_code."""

    relay_code: RelayErrorCode | None = None


@pytest.mark.parametrize(
    ("code", "key"),
    [
        (RelayErrorCode.NAMEPLATE_UNKNOWN, "end.expired_code"),
        (RelayErrorCode.OUTSIDE_HOURS, "end.outside_hours"),
        (RelayErrorCode.RATE_LIMITED, "end.rate_limited"),
        (RelayErrorCode.VERSION_MISMATCH, "end.version"),
        (RelayErrorCode.SHUTTING_DOWN, "end.server_restarting"),
        (RelayErrorCode.SESSION_UNKNOWN, "end.lost"),
        (RelayErrorCode.STORAGE_FULL, "end.storage_full"),
        (RelayErrorCode.PEER_GONE, "end.refused"),
        (RelayErrorCode.INTERNAL, "end.refused"),
    ],
)
@pytest.mark.parametrize("strings", [EN, PL], ids=["en", "pl"])
def test_the_relays_code_decides_not_its_wording(
    code: RelayErrorCode, key: str, strings: Strings
) -> None:
    detail = "Ceci n'est pas une phrase: business hours, code expired, cannot be reached."
    ended = SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, detail, relay_code=code)
    expected = strings.get(key, detail=detail)
    assert describe_outcome(outcome(ended), strings, relay_code=code) == expected
    with_code = OutcomeWithCode(
        by=ended.by,
        reason=ended.reason,
        message=describe_end(ended),
        detail=detail,
        relay_code=ended.relay_code,
    )
    assert relay_code_of(with_code) is code
    assert describe_outcome(with_code, strings) == expected


def test_an_outcome_without_a_code_falls_back_to_the_words() -> None:
    ended = SessionEnded(Party.RELAY, EndReason.RELAY_REFUSED, NOT_VALID)
    assert relay_code_of(outcome(ended)) is None
    assert describe_outcome(outcome(ended), PL) == PL.get("end.expired_code")


# ------------------------------------------------------------------ the language


def test_the_language_an_admin_set_wins_over_the_system() -> None:
    assert pick_language("en", "pl") == "en"
    assert pick_language(None, "en") == "en"
    assert pick_language(None, None) == "pl"  # the service is Polish
    assert pick_language(None, "de") == "pl"


def test_the_system_language_comes_from_the_locale_variables() -> None:
    assert system_language({"LANG": "en_GB.UTF-8"}) == "en"
    assert system_language({"LC_ALL": "pl_PL.UTF-8", "LANG": "en_US.UTF-8"}) == "pl"


def test_the_configured_language_is_read_from_each_source(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text('language = "en"\n')
    assert configured_language(toml, env={}) == "en"
    assert configured_language(toml, env={"ZGODA_LANGUAGE": "pl"}) == "pl"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert configured_language(empty, env={}) is None
    registry = FakeRegistry({"Language": "en"})
    assert configured_language(empty, env={}, registry=registry) == "en"


# ------------------------------------------------------------------ one instance


def test_a_second_instance_knocks_and_the_first_hears_it(tmp_path: Path) -> None:
    first, second = SingleInstance(tmp_path), SingleInstance(tmp_path)
    assert first.acquire()
    try:
        assert not second.acquire()
        assert not second.knock(timeout=0)  # nobody polled yet: the knock waits
        assert first.poll() == 1
        assert first.poll() == 0
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(KNOCK_PREFIX)]
    finally:
        first.close()
    third = SingleInstance(tmp_path)
    assert third.acquire()  # the lock went with the first
    third.close()


def test_the_knocker_learns_that_the_first_took_its_knock(tmp_path: Path) -> None:
    first, second = SingleInstance(tmp_path), SingleInstance(tmp_path)
    assert first.acquire()
    heard: list[int] = []
    stop = threading.Event()

    def owner() -> None:  # the Tk loop's polling, bounded
        for _ in range(400):
            heard.append(first.poll())
            if stop.wait(0.01):
                return

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        assert second.knock(timeout=KNOCK_TIMEOUT)
    finally:
        stop.set()
        thread.join()
        first.close()
    assert sum(heard) == 1


def test_only_a_whole_fresh_knock_counts(tmp_path: Path) -> None:
    first = SingleInstance(tmp_path)
    assert first.acquire()
    try:
        (tmp_path / f"{KNOCK_PREFIX}guess").write_bytes(b"open the door")
        (tmp_path / f".{KNOCK_PREFIX}half.tmp").write_bytes(b"sh")  # still being written
        stale = tmp_path / f"{KNOCK_PREFIX}old"
        stale.write_bytes(KNOCK)
        long_ago = time.time() - 2 * STALE_KNOCK
        os.utime(stale, (long_ago, long_ago))
        assert first.poll() == 0
        assert sorted(p.name for p in tmp_path.iterdir() if "knock" in p.name) == [
            f".{KNOCK_PREFIX}half.tmp"
        ]
    finally:
        first.close()


def test_the_runtime_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "zgoda").mkdir(mode=0o755)
    os.chmod(tmp_path / "zgoda", 0o777)
    path = runtime_dir()
    assert path == tmp_path / "zgoda"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_someone_elses_runtime_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "zgoda").symlink_to(tmp_path / "elsewhere")  # not a directory of its own
    with pytest.raises(PermissionError):
        runtime_dir()


# ------------------------------------------------------------------ the secure desktop


class Capture:
    def monitors(self) -> list[MonitorInfo]:
        return [MonitorInfo(index=1, left=0, top=0, width=2, height=1)]

    def changed(self) -> None:
        return None

    def wake_fd(self) -> None:
        return None

    def damaged_area(self) -> None:
        return None

    def grab_area(self, monitor: MonitorInfo, area: tuple[int, int, int, int]) -> bytes:
        return bytes(area[2] * area[3] * 4)

    def grab(self, monitor: MonitorInfo) -> bytes:
        return bytes(8)

    def cursor(self, *, known_serial: int | None) -> object:
        return None

    def close(self) -> None:
        pass


class Platform:
    name = "test"
    hotkeys = "passed through"

    def open_capture(self) -> Capture:
        return Capture()

    def open_input(self) -> object:
        return None


def test_the_guard_refuses_to_grab_while_a_secure_desktop_has_the_input() -> None:
    active = [False]
    guard = SecureDesktopGuard(Platform(), lambda: active[0], EN.get("secure_desktop"))  # type: ignore[arg-type]
    capture = guard.open_capture()
    monitor = capture.monitors()[0]
    assert capture.grab(monitor) == bytes(8)
    active[0] = True
    with pytest.raises(PlatformError, match="must answer"):
        capture.grab(monitor)
    assert guard.hotkeys == "passed through"  # anything else is the platform's


# ------------------------------------------------------------------ the command line


def tray_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "protocol.cli", "tray", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        check=False,
    )


def test_the_cli_refuses_a_consent_timeout_nobody_could_answer_in() -> None:
    result = tray_cli("--consent-timeout", "1")
    assert result.returncode == 2 and "at least 5" in result.stderr


def test_the_cli_names_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('relay_url = "nonsense"\n')
    result = tray_cli("--config", str(bad))
    assert result.returncode == 2 and "configuration error" in result.stderr


def test_each_tray_state_has_its_own_picture() -> None:
    from agent.ui.tray import TrayState, draw_icon, latin1

    pictures = {state: draw_icon(state).tobytes() for state in TrayState}
    assert len(set(pictures.values())) == len(TrayState)
    assert latin1("zgoda: poproś o pomoc… Łódź") == "zgoda: popros o pomoc... Lodz"
