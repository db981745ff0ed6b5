"""A slow link in the kernel's packet path: a namespace for "the PC", two TUN devices,
a delay line between them, and the kernel's token bucket for the rate.

    with TunLink.create(rate=5e6 / 8, delay=0.020) as link:  # root; see why_no_tunlink()
        link.popen([...])      # a process on "the PC", inside the namespace
        link.host_address      # 169.254.X.1: the host as the PC reaches it, across the link
        link.pc_address        # 169.254.X.2: the PC as the host reaches it, across the link

The PC's namespace holds one TUN device and the host one more, a point-to-point pair of
link-local addresses that nothing else routes. Each IP packet the kernel sends into one
of them is read by the delay line and written into the other `delay` seconds later: the
propagation delay, both ways (this kernel has no `sch_netem`, the qdisc that would do
it, nor `sch_fq`, whose departure times could).

The rate is the kernel's: each device's incoming packets are redirected to an `ifb`
device whose `tc tbf` lets them through at `rate`, with a queue of `QUEUE_SECONDS`: the
router of a slow uplink. It shapes on the receiving side on purpose. A tbf on the
sender's own outgoing device would never fill: the kernel lets one socket queue only a
few packets below it (TCP Small Queues) and keeps the rest in the socket, so a sender
that overruns the link would build no router queue at all. Here nothing local owns the
packets the delay line writes, so TCP sees a real bottleneck: its congestion window,
its socket buffers and the router's queue all in the loop (`bench.stream.SlowLink`
instead ends TCP on each side and queues bytes itself).

The delay line is a process of its own (`python -m bench.tunlink carry …`, handed the
two devices' descriptors): on a thread of the benchmark it would share an interpreter
lock with the console it measures. Bounded: at most `MAX_QUEUED` packets wait in it
(more are dropped, as a router would, and counted). Teardown stops it by its PID and
removes exactly what this object created: the host's ifb device, the two TUN devices
(they go with their last descriptor) and the namespace (with its ifb).
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
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
from pathlib import Path
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

REPO = Path(__file__).resolve().parents[1]

_serial = itertools.count()  # links made by this process


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
    report: str = ""  # after the link is gone: what it carried and dropped

    @classmethod
    @contextlib.contextmanager
    def create(cls, rate: float, delay: float, congestion: str = "") -> Iterator[TunLink]:
        """Build the namespace, devices, addresses and qdiscs; start the delay line;
        undo what was made afterwards. `congestion`: the PC's default TCP congestion
        control (one of the kernel's `tcp_allowed_congestion_control`; "": the host's).

        Raises:
            CalledProcessError, OSError: the kernel or iproute2 refused (a name taken).
            RuntimeError: the delay line did not start.
        """
        # 169.254.250-254.x: apart from tests/security/netns.py's 169.254.1-249.x
        tag = (os.getpid() * 4 + next(_serial)) % 320
        prefix, first = f"169.254.{250 + tag // 64}", (tag % 64) * 4
        link = cls(
            namespace=f"zgoda-link-{tag}",
            rate=rate,
            delay=delay,
            host_address=f"{prefix}.{first + 1}",
            pc_address=f"{prefix}.{first + 2}",
        )
        host_dev, pc_dev, host_ifb, pc_ifb = (f"zgl{k}{tag}" for k in ("h", "p", "hi", "pi"))
        made: list[str] = []  # what to remove: "ns", "ifb"
        fds: list[int] = []
        line: subprocess.Popen[str] | None = None
        try:
            run("ip", "netns", "add", link.namespace)
            made.append("ns")
            ns = ("ip", "-n", link.namespace)
            tc_ns = ("tc", "-n", link.namespace)
            if congestion:  # per namespace: the PC's processes, agent and VNC servers alike
                setting = f"net.ipv4.tcp_congestion_control={congestion}"
                run("ip", "netns", "exec", link.namespace, "sysctl", "-q", "-w", setting)
            fds.append(open_tun(host_dev))
            fds.append(open_tun(pc_dev))
            run("ip", "link", "set", pc_dev, "netns", link.namespace)
            run("ip", "addr", "add", link.host_address, "peer", link.pc_address, "dev", host_dev)
            run(*ns, "addr", "add", link.pc_address, "peer", link.host_address, "dev", pc_dev)
            run("ip", "link", "add", host_ifb, "type", "ifb")
            made.append("ifb")
            run(*ns, "link", "add", pc_ifb, "type", "ifb")  # goes with the namespace
            for dev in (host_dev, host_ifb):
                run("ip", "link", "set", dev, "up")
            for dev in (pc_dev, pc_ifb, "lo"):
                run(*ns, "link", "set", dev, "up")
            kbit = max(8, int(rate * 8 / 1000))
            burst = max(3200, int(rate / 250))  # two full packets, or 4 ms at the rate
            shape = ["root", "tbf", "rate", f"{kbit}kbit", "burst", str(burst)]
            shape += ["latency", f"{int(QUEUE_SECONDS * 1000)}ms"]
            redirect = ["protocol", "all", "u32", "match", "u32", "0", "0"]
            redirect += ["action", "mirred", "egress", "redirect", "dev"]
            for tc, dev, ifb in (("tc",), host_dev, host_ifb), (tc_ns, pc_dev, pc_ifb):
                run(*tc, "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress")
                run(*tc, "filter", "add", "dev", dev, "parent", "ffff:", *redirect, ifb)
                run(*tc, "qdisc", "add", "dev", ifb, *shape)
            carrier = [sys.executable, "-m", "bench.tunlink", "carry"]
            line = subprocess.Popen(
                [*carrier, str(fds[0]), str(fds[1]), str(delay)],
                pass_fds=fds,
                stdout=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            assert line.stdout is not None
            if line.stdout.readline().strip() != "ready":
                raise RuntimeError("the delay line did not start (python -m bench.tunlink)")
            yield link
        finally:
            notes = []
            if "ns" in made:
                notes = link._counters(host_ifb, pc_ifb)
            if line is not None:
                line.terminate()
                try:
                    said = line.communicate(timeout=5)[0].strip()
                except subprocess.TimeoutExpired:
                    line.kill()
                    said = line.communicate(timeout=5)[0].strip()
                link.report = "; ".join([said, *notes])
            for fd in fds:
                os.close(fd)  # the TUN devices go with their descriptors
            if "ifb" in made:
                run("ip", "link", "del", host_ifb, check=False)
            if "ns" in made:
                run("ip", "netns", "del", link.namespace, check=False)

    def _counters(self, host_ifb: str, pc_ifb: str) -> list[str]:
        """tbf's drops each way and the PC's TCP retransmissions, for the report."""
        notes = []
        each_way = (
            ("PC → host", ("tc",), host_ifb),
            ("host → PC", ("tc", "-n", self.namespace), pc_ifb),
        )
        for where, tc, dev in each_way:
            shown = run(*tc, "-s", "qdisc", "show", "dev", dev, check=False).stdout
            found = re.search(r"dropped (\d+)", shown)
            if found:
                notes.append(f"{where}: tbf dropped {found[1]} packets")
        snmp = run("ip", "netns", "exec", self.namespace, "cat", "/proc/net/snmp", check=False)
        tcp = [ln.split() for ln in snmp.stdout.splitlines() if ln.startswith("Tcp:")]
        if len(tcp) == 2 and "RetransSegs" in tcp[0]:
            notes.append(f"the PC's TCP retransmitted {tcp[1][tcp[0].index('RetransSegs')]}")
        return notes

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `command` on "the PC" (same files, users and display; `ip netns exec`
        execs it, so the process keeps the PID returned here)."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, *command], **kwargs)


def carry(host: int, pc: int, delay: float) -> dict[str, int]:
    """The delay line, until SIGTERM: read each packet that leaves a device and write
    it into the other `delay` seconds later, in order. Returns its counts."""
    stop = False

    def ended(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, ended)
    print("ready", flush=True)
    other = {host: pc, pc: host}
    waiting: list[tuple[float, int, int, bytes]] = []  # (due, order, target, packet)
    order = 0
    counts = {"carried": 0, "overflow": 0, "refused": 0}
    while not stop:
        wait = 0.05 if not waiting else min(0.05, max(0.0, waiting[0][0] - time.monotonic()))
        readable, _, _ = select.select([host, pc], [], [], wait)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    packet = os.read(fd, 65535)
                except BlockingIOError:
                    break
                if len(waiting) >= MAX_QUEUED:
                    counts["overflow"] += 1
                    continue
                heapq.heappush(waiting, (now + delay, order, other[fd], packet))
                order += 1
        now = time.monotonic()
        while waiting and waiting[0][0] <= now:
            _, _, target, packet = heapq.heappop(waiting)
            try:
                os.write(target, packet)
                counts["carried"] += 1
            except OSError:  # the device refused it (full, or going down)
                counts["refused"] += 1
    counts["left"] = len(waiting)
    return counts


if __name__ == "__main__" and sys.argv[1:2] == ["carry"]:
    done = carry(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    print(
        f"delay line: {done['carried']} packets carried, {done['overflow']} dropped "
        f"(full), {done['refused']} refused by a device, {done['left']} in flight at the end"
    )
