"""A real relay process on 127.0.0.1 for tests: `start_relay()` and the `relay` fixture.

    from tests.support.relay import relay  # noqa: F401  (the fixture)

    def test_something(relay):
        token = relay.login()["token"]
        ticket = relay.create_ticket(token)
        relay.ws_console_url, relay.ws_agent_url, relay.pubkey, relay.org

The relay runs `zgoda relay serve --port 0` in a temporary data dir with one
consultant (`relay.username` / `relay.password`, display name
`relay.display_name`), business hours `always` and a 3 s resume grace
(`TEST_DEFAULTS`) unless told otherwise. Its log (stderr) goes to
`relay.log_path`. It is stopped by PID (SIGTERM, then SIGKILL) when the
fixture ends. `module_relay(config)` makes a fixture of one relay per test
module, and `TEST_LIMITS` lifts the per-address limits that tests, all
connecting from 127.0.0.1, would otherwise run into.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DEFAULT_ORG = "Example Sp. z o.o."
DEFAULT_USER = "anna"
DEFAULT_PASSWORD = "correct horse battery"
DEFAULT_NAME = "Anna Nowak"


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "protocol.cli", "relay", *args]


def relay_cli(
    data_dir: Path, *args: str, stdin: str = "", env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `zgoda relay ARGS --data-dir DATA_DIR` and return its result (never raises)."""
    return subprocess.run(
        [*_command(*args), "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def add_consultant(
    data_dir: Path, username: str, name: str, password: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`zgoda relay consultant add USERNAME --name NAME --password-stdin EXTRA...`.

    Raises AssertionError when the command fails.
    """
    result = relay_cli(
        data_dir,
        "consultant",
        "add",
        username,
        "--name",
        name,
        "--password-stdin",
        *extra,
        stdin=password + "\n",
    )
    assert result.returncode == 0, result.stderr
    return result


@dataclass
class RelayProcess:
    """One running relay and helpers to talk to it."""

    data_dir: Path
    org: str
    url: str
    proc: subprocess.Popen[str]
    log_path: Path
    pubkey: str
    fingerprint: str = ""
    username: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    display_name: str = DEFAULT_NAME
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    @property
    def ws_console_url(self) -> str:
        return self.ws_url + "/ws/console"

    @property
    def ws_agent_url(self) -> str:
        return self.ws_url + "/ws/agent"

    @property
    def tls(self) -> bool:
        return self.url.startswith("https")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the relay's dev certificate (None without TLS)."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.data_dir / "dev-tls-cert.pem"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- HTTP API

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Call the API; returns (status, parsed JSON or raw text). Never raises for 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.ssl_context()) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def login(
        self, username: str | None = None, password: str | None = None, totp: str | None = None
    ) -> dict[str, Any]:
        """POST /api/login; returns the JSON. Raises AssertionError when it fails."""
        body: dict[str, Any] = {
            "username": username or self.username,
            "password": password if password is not None else self.password,
        }
        if totp is not None:
            body["totp"] = totp
        status, reply = self.api("POST", "/api/login", body)
        assert status == 200, (status, reply)
        return dict(reply)

    def token(self) -> str:
        return str(self.login()["token"])

    def create_ticket(self, token: str, **fields: str) -> dict[str, Any]:
        """POST /api/tickets with sensible defaults; returns the ticket JSON."""
        body = {
            "caller_name": "Jan Kowalski",
            "company": "Kowalski i Syn",
            "phone": "+48 600 100 200",
            "problem": "Outlook does not start\nsince this morning",
            **fields,
        }
        status, reply = self.api("POST", "/api/tickets", body, token=token)
        assert status == 201, (status, reply)
        return dict(reply)

    def add_consultant(
        self, username: str, name: str, password: str, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        return add_consultant(self.data_dir, username, name, password, *extra)

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return relay_cli(self.data_dir, *args, stdin=stdin)

    # -- process

    def stop(self) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._close_pipes()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self) -> RelayProcess:
        """Start a new relay process on the same data dir (a new port)."""
        self.stop()
        return _spawn(self.data_dir, self.org, self.args, self.env, self.log_path)


def _spawn(
    data_dir: Path, org: str, args: tuple[str, ...], env: dict[str, str], log_path: Path
) -> RelayProcess:
    log = log_path.open("a")
    try:
        proc = subprocess.Popen(
            [
                *_command("serve"),
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--org",
                org,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO,
            env={**os.environ, **env},
        )
    finally:
        log.close()
    try:
        url = _read_line(proc, "zgoda relay listening on ")
        fingerprint = ""
        if url.startswith("https"):
            fingerprint = _read_line(proc, "zgoda relay tls sha256 fingerprint ")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()
        raise
    process = RelayProcess(
        data_dir=data_dir,
        org=org,
        url=url,
        proc=proc,
        log_path=log_path,
        pubkey="",
        fingerprint=fingerprint,
        args=args,
        env=env,
    )
    # the same key `zgoda relay pubkey` prints; asking the running relay saves a process
    status, info = process.api("GET", "/api/relay")
    assert status == 200, info
    process.pubkey = info["public_key"]
    return process


def _read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The rest of the next stdout line, which must start with `prefix` (bounded in time).

    Reads the pipe with os.read, byte-exact: a buffered readline() could swallow the
    next line into Python's buffer where select() cannot see it.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = _PENDING.setdefault(proc.pid, bytearray())
    deadline = time.monotonic() + START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending[:] = rest
                text = line.decode(errors="replace")
                if text.startswith(prefix):
                    return text[len(prefix) :].strip()
            if selector.select(timeout=0.2):
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                pending += chunk
            elif proc.poll() is not None:
                break
    raise RuntimeError(f"relay did not print {prefix!r} (exit status {proc.poll()})")


_PENDING: dict[int, bytearray] = {}
"""Stdout bytes read past the line asked for, per relay process."""


TEST_DEFAULTS: dict[str, Any] = {"hours": "always", "resume_grace": 3.0}
"""What a test relay differs in from production: open at any hour, and a dropped
link held 3 s for a resume (production: 30 s) so that a test of a peer leaving
does not wait half a minute. A test passes `config` to change either."""


def start_relay(
    data_dir: Path,
    *,
    org: str = DEFAULT_ORG,
    config: Mapping[str, Any] | None = None,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    consultant: bool = True,
) -> RelayProcess:
    """Write `relay.toml` (TEST_DEFAULTS, then `config`), add the default consultant,
    and start a relay on 127.0.0.1 with a free port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {**TEST_DEFAULTS, **(config or {})}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    (data_dir / "relay.toml").write_text("\n".join(lines) + "\n")
    if consultant:
        add_consultant(data_dir, DEFAULT_USER, DEFAULT_NAME, DEFAULT_PASSWORD)
    return _spawn(data_dir, org, args, dict(env or {}), data_dir / "relay.log")


TEST_LIMITS: dict[str, Any] = {
    "claims_per_ip_per_minute": 1000,
    "claims_per_minute": 1000,
    "claim_attempts_per_ip_per_minute": 1000,
    "logins_per_ip_per_minute": 1000,
}
"""Every test claims and logs in from 127.0.0.1: the relay's per-address limits would
otherwise refuse the eleventh claim of a minute (which is what they are for). The
relay's own tests (tests/relay) keep the production limits, which they test."""


@contextlib.contextmanager
def running_relay(data_dir: Path, **options: Any) -> Iterator[RelayProcess]:
    """`start_relay(data_dir, **options)` for the block; stopped by PID when it ends.

    Raises what `start_relay` raises (AssertionError, RuntimeError) when it cannot start.
    """
    process = start_relay(data_dir, **options)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A running relay with one consultant, hours `always`; stopped afterwards by PID."""
    with running_relay(tmp_path / "relay") as process:
        yield process


def module_relay(
    doc: str, config: Mapping[str, Any] | None = None
) -> Callable[..., Iterator[RelayProcess]]:
    """A module-scoped fixture (described by `doc`): one relay started with `config`
    for a whole test module, stopped by PID after its last test. The fixture's name
    is the name it is assigned to in a conftest: `shared_relay = module_relay(...)`."""

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
        with running_relay(tmp_path_factory.mktemp("relay") / "data", config=config) as process:
            yield process

    fixture.__doc__ = doc
    return pytest.fixture(scope="module")(fixture)
