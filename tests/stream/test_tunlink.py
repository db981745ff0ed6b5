"""`bench.tunlink`, the benchmark's slow link in the kernel's packet path: what crosses
it arrives whole and in order, both ways, and nothing of it is left afterwards.
(Its rate and delay are what `bench.stream --tun-link` measures with; tests do not
time anything.)"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading

import pytest

from bench.tunlink import TunLink, why_no_tunlink

pytestmark = pytest.mark.skipif(why_no_tunlink() is not None, reason=str(why_no_tunlink()))

ECHO = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
data = bytes(range(256)) * 2048  # 512 KiB
s.sendall(data)
s.shutdown(socket.SHUT_WR)
back = b""
while chunk := s.recv(65536):
    back += chunk
print(len(back), back == data[::-1])
"""


def test_a_tcp_stream_crosses_the_link_whole_both_ways_and_the_link_leaves_nothing() -> None:
    with TunLink.create(rate=2e6 / 8, delay=0.005) as link:
        namespace = link.namespace
        server = socket.create_server((link.host_address, 0))
        server.settimeout(30)
        port = server.getsockname()[1]
        received: list[bytes] = []

        def reverse_it() -> None:
            conn, peer = server.accept()
            with conn:
                received.append(peer[0].encode())
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                received.append(data)
                conn.sendall(data[::-1])

        thread = threading.Thread(target=reverse_it)
        thread.start()
        pc = link.popen(
            [sys.executable, "-c", ECHO, link.host_address, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = pc.communicate(timeout=60)
        thread.join(30)
        server.close()
        assert received[0] == link.pc_address.encode()  # it came from "the PC", across
        sent = bytes(range(256)) * 2048
        assert hashlib.sha256(received[1]).digest() == hashlib.sha256(sent).digest()
        assert out.split() == [str(len(sent)), "True"]
    assert "packets carried" in link.report and "tbf dropped" in link.report
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert namespace not in left.stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    assert "zgl" not in links.stdout
