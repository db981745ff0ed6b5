"""A network namespace for the agent, joined to the host by a veth pair the test owns.

    with AgentNamespace.create() as ns:   # root only; see why_no_netns()
        ns.host_address                   # 169.254.X.1: the relay binds here
        ns.popen([...])                   # a process inside the namespace
        ns.cut(); ns.restore()            # the agent's cable pulled and plugged back

The addresses are link-local (169.254.0.0/16) and live only on the pair; nothing is
routed anywhere else. The cut sets the namespace's end of the pair down: inside, the
route to the relay goes away (a reconnect fails at once with "network unreachable",
as with a pulled cable or Wi-Fi off); the host's end loses its carrier and keeps its
address, so the consultant's link to the relay (host side) is untouched. Teardown
deletes exactly the link and the namespace this object created, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS` (iproute2); raises CalledProcessError when `check` and it fails."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def why_no_netns() -> str | None:
    """None when this process can create namespaces and veth pairs, else why not."""
    if os.geteuid() != 0:
        return "needs root: creating a network namespace and a veth pair takes it"
    if shutil.which("ip") is None:
        return "needs iproute2 (the ip command): .ci/system-packages installs it"
    return None


@dataclass
class AgentNamespace:
    name: str
    host_link: str
    ns_link: str
    host_address: str
    ns_address: str

    @classmethod
    @contextlib.contextmanager
    def create(cls) -> Iterator[AgentNamespace]:
        """Create the namespace and the pair (names and a /30 unique to this process);
        remove both afterwards. Raises CalledProcessError when `ip` refuses."""
        tag = os.getpid() % 15936
        prefix, first = f"169.254.{1 + tag // 64}", (tag % 64) * 4
        ns = cls(
            name=f"zgoda-test-{tag}",
            host_link=f"zgh{tag}",
            ns_link=f"zgn{tag}",
            host_address=f"{prefix}.{first + 1}",
            ns_address=f"{prefix}.{first + 2}",
        )
        try:
            ip("netns", "add", ns.name)
            ip("link", "add", ns.host_link, "type", "veth", "peer", "name", ns.ns_link)
            ip("link", "set", ns.ns_link, "netns", ns.name)
            ip("addr", "add", f"{ns.host_address}/30", "dev", ns.host_link)
            ip("link", "set", ns.host_link, "up")
            ip("-n", ns.name, "addr", "add", f"{ns.ns_address}/30", "dev", ns.ns_link)
            ip("-n", ns.name, "link", "set", ns.ns_link, "up")
            ip("-n", ns.name, "link", "set", "lo", "up")
            yield ns
        finally:
            # deleting one end of a veth deletes the pair; the namespace goes by name
            ip("link", "del", ns.host_link, check=False)
            ip("netns", "del", ns.name, check=False)

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start `command` inside the namespace (same files, users and display)."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *command], **kwargs)

    def cut(self) -> None:
        ip("-n", self.name, "link", "set", self.ns_link, "down")

    def restore(self) -> None:
        ip("-n", self.name, "link", "set", self.ns_link, "up")


class AgentProcess:
    """`tests.security.netns_agent` running inside `ns`; its stdout records collected.

    Stopped by PID (`stop()`); every wait is bounded.
    """

    def __init__(self, ns: AgentNamespace, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.records: list[dict[str, Any]] = []
        self.proc = ns.popen(
            [sys.executable, "-m", "tests.security.netns_agent", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name="netns-agent-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self.records.append(json.loads(line))

    def seen(self, key: str, value: object = None) -> dict[str, Any] | None:
        for record in self.records:
            if key in record and (value is None or record[key] == value):
                return record
        return None

    async def wait_for(
        self, key: str, value: object = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first record with `key` (equal to `value` if given). Raises AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.seen(key, value)
            if record is not None:
                return record
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"the agent did not report {key}={value!r}: {self.records}")

    def end(self) -> None:
        """The user's End click."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("end\n")
        self.proc.stdin.flush()

    def stop(self) -> int:
        """Close stdin (the driver ends its session), wait, kill by PID if needed."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        self._reader.join(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
