"""`bench.tunlink`, the benchmark's slow link in the kernel's packet path: what crosses
it arrives whole, both ways, with nothing dropped or resent on the way, the router
queue it models fills under a sender that overruns it, and nothing of it is left
afterwards. (Its rate and delay are what `bench.stream --tun-link` measures with;
tests do not time anything.)"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import sys
import threading

import pytest

from bench.tunlink import TunLink, run, why_no_tunlink

pytestmark = pytest.mark.skipif(why_no_tunlink() is not None, reason=str(why_no_tunlink()))

SENT = bytes(range(256)) * 2048  # 512 KiB

PC_SIDE = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
data = bytes(range(256)) * 2048
s.sendall(data)
s.shutdown(socket.SHUT_WR)
back = b""
while chunk := s.recv(65536):
    back += chunk
print(len(back), back == data[::-1])
"""


def namespaces() -> list[str]:
    listed = run("ip", "netns", "list").stdout.splitlines()
    return [line.split()[0] for line in listed if line.strip()]


def test_a_tcp_stream_crosses_the_link_whole_both_ways_and_the_link_leaves_nothing() -> None:
    received: list[bytes] = []
    with TunLink.create(rate=2e6 / 8, delay=0.005, congestion="reno") as link:
        namespace = link.namespace
        assert namespace in namespaces()
        congestion = run(
            "ip", "netns", "exec", namespace, "sysctl", "-n", "net.ipv4.tcp_congestion_control"
        )
        assert congestion.stdout.strip() == "reno"
        with socket.create_server((link.host_address, 0)) as server:
            server.settimeout(30)
            port = server.getsockname()[1]

            def reverse_it() -> None:
                conn, peer = server.accept()
                with conn:
                    conn.settimeout(30)
                    received.append(peer[0].encode())
                    data = b""
                    while chunk := conn.recv(65536):
                        data += chunk
                    received.append(data)
                    conn.sendall(data[::-1])

            thread = threading.Thread(target=reverse_it, daemon=True)
            thread.start()
            pc = link.popen(
                [sys.executable, "-c", PC_SIDE, link.host_address, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            out, _ = pc.communicate(timeout=60)
            thread.join(30)
            assert not thread.is_alive()
    assert received[0] == link.pc_address.encode()  # it came from "the PC", across
    assert hashlib.sha256(received[1]).digest() == hashlib.sha256(SENT).digest()
    assert out.split() == [str(len(SENT)), "True"]
    assert "0 dropped (full), 0 refused" in link.report  # the delay line lost nothing
    assert namespace not in namespaces()
    assert "zgl" not in run("ip", "-br", "link").stdout


DATAGRAMS = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
count, size, gap = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
for n in range(count):
    s.sendto(n.to_bytes(4, "big") + bytes([n % 251]) * (size - 4), (sys.argv[1], int(sys.argv[2])))
    if gap:
        time.sleep(gap)
"""


def datagrams_across(link: TunLink, count: int, size: int, gap: float) -> list[bytes]:
    """Numbered datagrams sent by "the PC" to the host; those that arrived, in order."""
    got: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((link.host_address, 0))
        sink.settimeout(2)

        def read() -> None:  # while they come: a full socket buffer would drop some too
            with contextlib.suppress(TimeoutError):
                while len(got) < count:
                    got.append(sink.recv(65536))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        args = [link.host_address, str(sink.getsockname()[1]), str(count), str(size), str(gap)]
        pc = link.popen([sys.executable, "-c", DATAGRAMS, *args])
        assert pc.wait(60) == 0
        reader.join(30)
        assert not reader.is_alive()
    return got


def test_datagrams_below_the_rate_arrive_all_in_order_and_unaltered() -> None:
    with TunLink.create(rate=1e6 / 8, delay=0.005) as link:
        # 200 × 500 B at one every 10 ms: 50 KB/s, under the link's 125 KB/s
        got = datagrams_across(link, 200, 500, 0.01)
    assert [int.from_bytes(d[:4], "big") for d in got] == list(range(200))
    assert all(d[4:] == bytes([n % 251]) * 496 for n, d in enumerate(got))
    assert "PC → host: tbf dropped 0 packets" in link.report


def test_the_router_queue_fills_and_drops_under_a_sender_that_overruns_the_link() -> None:
    # with the tbf on the sender's own device the kernel would push back on the
    # socket instead; on the receiving side, as here, the excess waits in the
    # router's queue and what does not fit is dropped, as on a real uplink
    with TunLink.create(rate=1e6 / 8, delay=0.005) as link:
        got = datagrams_across(link, 3000, 1200, 0.0)  # 3.6 MB at once
    numbers = [int.from_bytes(d[:4], "big") for d in got]
    assert numbers == sorted(numbers)  # what got through kept its order
    assert 0 < len(got) < 3000
    assert "PC → host: tbf dropped 0 packets" not in link.report, link.report
