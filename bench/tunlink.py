"""A slow link in the kernel's packet path: a namespace for "the PC", two TUN devices,
the kernel's token bucket for the rate and a delay line for the round trip.

    with TunLink.create(rate=5e6 / 8, delay=0.020) as link:  # root; see why_no_tunlink()
        link.popen([...])      # a process on "the PC", inside the namespace
        link.host_address      # 169.254.X.1: the host as the PC reaches it, across the link
        link.pc_address        # 169.254.X.2: the PC as the host reaches it, across the link

The PC's namespace holds one TUN device and the host one more, a point-to-point pair of
link-local addresses that nothing else routes. Each IP packet the kernel sends into
one of them is read here and written into the other `delay` seconds later: that is the
propagation delay, both ways (this kernel has no `sch_netem`, the qdisc that would do it).
The rate is the kernel's own: `tc tbf` on each device's egress, with a queue of
`QUEUE_SECONDS`, so TCP runs over a real bottleneck, with its congestion window, its
socket buffers and a router queue all in the loop, where the user-space proxy of
`bench.stream.SlowLink` ends TCP at each side and queues bytes itself.

The delay line is a process of its own (`python -m bench.tunlink carry …`, handed the
two devices' descriptors): on a thread of the benchmark it would share an interpreter
lock with the console it measures, and a busy moment there would hold packets back.
Bounded: at most `MAX_QUEUED` packets wait in it (more are dropped, as a router would).
Teardown stops it by its PID, closes both devices (TUN devices without `persist` go with
their last descriptor) and deletes the namespace this object created, by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

QUEUE_SECONDS = 0.4
"""tbf's queue, in time at the link's rate: a router with a generous buffer, so that a
sender that does not pace itself builds latency (what the benchmark looks for) before
its packets are dropped."""

MAX_QUEUED = 20_000
"""Packets in flight in the delay line at most (5 Mbit/s × 20 ms is ~10 full packets)."""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an iproute2 command (`ip …`, `tc …`); raises CalledProcessError if `check`."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=check)


def why_no_tunlink() -> str | None:
    """None when this process can build the link, else why not."""
    if os.geteuid() != 0:
        return "needs root: a network namespace, TUN devices and a qdisc take it"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2 ({tool}): .ci/system-packages installs it"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (CONFIG_TUN)"
    return None


def open_tun(name: str) -> int:
    """A new TUN device `name` (IP packets, no extra header) and its descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class TunLink:
    namespace: str
    rate: float  # bytes/s, each way
    delay: float  # seconds, each way
    host_address: str
    pc_address: str
    report: str = ""  # the delay line's last words: packets carried and dropped
    congestion: str = ""  # TCP congestion control for the PC's processes ("": the host's)

    @classmethod
    @contextlib.contextmanager
    def create(cls, rate: float, delay: float) -> Iterator[TunLink]:
        """Build the namespace, both devices, their addresses and qdiscs; start the delay
        line; undo it all afterwards. Raises CalledProcessError or OSError when the
        kernel or iproute2 refuse."""
        tag = os.getpid() % 15936
        prefix, first = f"169.254.{1 + tag // 64}", (tag % 64) * 4
        link = cls(
            namespace=f"zgoda-link-{tag}",
            rate=rate,
            delay=delay,
            host_address=f"{prefix}.{first + 1}",
            pc_address=f"{prefix}.{first + 2}",
        )
        host_dev, pc_dev = f"zglh{tag}", f"zglp{tag}"
        fds: list[int] = []
        line: subprocess.Popen[str] | None = None
        try:
            run("ip", "netns", "add", link.namespace)
            fds.append(open_tun(host_dev))
            fds.append(open_tun(pc_dev))
            run("ip", "link", "set", pc_dev, "netns", link.namespace)
            ns = ("ip", "-n", link.namespace)
            run("ip", "addr", "add", link.host_address, "peer", link.pc_address, "dev", host_dev)
            run(*ns, "addr", "add", link.pc_address, "peer", link.host_address, "dev", pc_dev)
            run("ip", "link", "set", host_dev, "up")
            run(*ns, "link", "set", pc_dev, "up")
            run(*ns, "link", "set", "lo", "up")
            kbit = max(8, int(rate * 8 / 1000))
            burst = max(3200, int(rate / 250))  # two full packets, or 4 ms at the rate
            shape = ["root", "tbf", "rate", f"{kbit}kbit", "burst", str(burst)]
            shape += ["latency", f"{int(QUEUE_SECONDS * 1000)}ms"]
            run("tc", "qdisc", "add", "dev", host_dev, *shape)
            run("tc", "-n", link.namespace, "qdisc", "add", "dev", pc_dev, *shape)
            carrier = [sys.executable, "-m", "bench.tunlink", "carry"]
            line = subprocess.Popen(
                [*carrier, str(fds[0]), str(fds[1]), str(delay)],
                pass_fds=fds,
                stdout=subprocess.PIPE,
                text=True,
            )
            yield link
        finally:
            drops = []
            for where, dev in (("host → PC", host_dev), ("PC → host", pc_dev)):
                tc = ["tc"] if dev == host_dev else ["tc", "-n", link.namespace]
                shown = run(*tc, "-s", "qdisc", "show", "dev", dev, check=False).stdout
                found = re.search(r"dropped (\d+), overlimits (\d+)", shown)
                if found:
                    drops.append(f"{where}: tbf dropped {found[1]} packets")
            snmp = run("ip", "netns", "exec", link.namespace, "cat", "/proc/net/snmp", check=False)
            tcp = [ln.split() for ln in snmp.stdout.splitlines() if ln.startswith("Tcp:")]
            if len(tcp) == 2 and "RetransSegs" in tcp[0]:
                drops.append(f"the PC's TCP retransmitted {tcp[1][tcp[0].index('RetransSegs')]}")
            if line is not None:
                line.terminate()
                try:
                    link.report = "; ".join([line.communicate(timeout=5)[0].strip(), *drops])
                except subprocess.TimeoutExpired:
                    line.kill()
                    line.communicate(timeout=5)
            for fd in fds:
                os.close(fd)  # the devices go with their descriptors
            run("ip", "netns", "del", link.namespace, check=False)

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `command` on "the PC" (same files, users and display; `ip netns exec`
        execs it, so the process keeps the PID returned here)."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, *command], **kwargs)


def carry(host: int, pc: int, delay: float) -> tuple[int, int]:
    """The delay line, until SIGTERM: read each packet that leaves a device and write
    it into the other `delay` seconds later, in order. Returns (carried, dropped)."""
    stop = False

    def ended(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, ended)
    other = {host: pc, pc: host}
    waiting: list[tuple[float, int, int, bytes]] = []  # (due, order, target, packet)
    order = carried = dropped = 0
    while not stop:
        wait = 0.05 if not waiting else min(0.05, max(0.0, waiting[0][0] - time.monotonic()))
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([host, pc], [], [], wait)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    packet = os.read(fd, 65535)
                except BlockingIOError:
                    break
                if len(waiting) >= MAX_QUEUED:
                    dropped += 1
                    continue
                heapq.heappush(waiting, (now + delay, order, other[fd], packet))
                order += 1
        now = time.monotonic()
        while waiting and waiting[0][0] <= now:
            _, _, target, packet = heapq.heappop(waiting)
            try:
                os.write(target, packet)
                carried += 1
            except OSError:  # the device is going down (teardown)
                dropped += 1
    return carried, dropped


if __name__ == "__main__" and sys.argv[1:2] == ["carry"]:
    done = carry(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    print(f"delay line: {done[0]} packets carried, {done[1]} dropped")
