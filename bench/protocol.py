"""Protocol core costs, each beside a peer or limit measured in the same run.

    .venv/bin/python -m bench.protocol [--seconds 0.5]

- seal+open MB/s (AES-256-GCM, our channel) for 200 B and 64 KiB, against
  ChaCha20-Poly1305 from the same library on the same payloads;
- sealing a 1080p JPEG frame against encoding it (simplejpeg, q70): the issue's
  target is that sealing costs under 10 % of the encode;
- encode/decode µs of a Frame with 64 regions, against bare msgpack of the same
  arrays (what our validation costs);
- PAKE + key confirmation ms for both ends, against bare SPAKE2.

Figures are printed, never asserted. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import msgpack
import numpy as np
import simplejpeg
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from spake2 import SPAKE2_A, SPAKE2_B

from protocol.channel import Channel
from protocol.codec import decode_inner, encode
from protocol.codes import PhoneCode
from protocol.handshake import Handshake
from protocol.messages import Encoding, Frame, Party, Region

MAX_ITERATIONS = 200_000


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """Median-free simple mean: seconds per call over a bounded run."""
    fn()  # warm
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while count < MAX_ITERATIONS:
        fn()
        count += 1
        if count % 16 == 0 and time.perf_counter() > deadline:
            break
    return (time.perf_counter() - start) / count


def keyed_channels() -> tuple[Channel, Channel]:
    code = PhoneCode("482", "913775")
    c, a = Handshake(Party.CONSOLE, code), Handshake(Party.AGENT, code)
    pc, pa = c.start(), a.start()
    cc, ca = c.receive_pake(pa), a.receive_pake(pc)
    return Channel(c.receive_confirm(ca)), Channel(a.receive_confirm(cc))


def bench_seal(seconds: float) -> None:
    console, agent = keyed_channels()
    chacha = ChaCha20Poly1305(os.urandom(32))
    nonce = bytes(12)
    print("seal+open (one direction, then opened by the peer)")
    for size in (200, 64 * 1024):
        payload = os.urandom(size)

        def ours_once(p: bytes = payload) -> object:
            return agent.open(console.seal(p))

        def peer_once(p: bytes = payload) -> object:
            return chacha.decrypt(nonce, chacha.encrypt(nonce, p, b""), b"")

        ours = per_call(ours_once, seconds)
        peer = per_call(peer_once, seconds)
        print(
            f"  {size:>6} B  AES-256-GCM channel {size / ours / 1e6:8.1f} MB/s   "
            f"ChaCha20-Poly1305 {size / peer / 1e6:8.1f} MB/s   ratio {peer / ours:5.2f}x"
        )


def desktop_like(width: int = 1920, height: int = 1080) -> np.ndarray:
    """A synthetic desktop: flat panels, text-like stripes, a photo-like gradient."""
    rng = np.random.default_rng(7)
    img = np.full((height, width, 4), 235, dtype=np.uint8)
    img[:40, :, :3] = (60, 60, 70)
    for y in range(80, height - 80, 18):
        img[y : y + 2, 100 : 100 + int(rng.integers(300, 1400)), :3] = 30
    gy, gx = np.mgrid[0:400, 0:600]
    img[500:900, 1200:1800, 0] = (gx * 255 // 600).astype(np.uint8)
    img[500:900, 1200:1800, 1] = (gy * 255 // 400).astype(np.uint8)
    img[500:900, 1200:1800, 2] = rng.integers(0, 40, (400, 600), dtype=np.uint8) + 100
    return img


def bench_frame_seal_vs_jpeg(seconds: float) -> None:
    console, agent = keyed_channels()
    img = desktop_like()
    jpeg = simplejpeg.encode_jpeg(img, quality=70, colorspace="BGRA", colorsubsampling="420")
    encode_s = per_call(
        lambda: simplejpeg.encode_jpeg(img, quality=70, colorspace="BGRA", colorsubsampling="420"),
        seconds,
    )
    frame = Frame(
        frame_id=1,
        captured_at_ns=0,
        width=1920,
        height=1080,
        regions=(Region(x=0, y=0, width=1920, height=1080, encoding=Encoding.JPEG, data=jpeg),),
    )
    seal_s = per_call(lambda: agent.open(console.seal(encode(frame))), seconds)
    print("1080p frame: seal+open+encode of the message vs JPEG encode of the pixels")
    print(
        f"  JPEG {len(jpeg) / 1024:.0f} KiB: encode {encode_s * 1e3:.2f} ms, "
        f"message+seal+open {seal_s * 1e3:.3f} ms   share {seal_s / encode_s * 100:.1f} % "
        f"(target < 10 %)"
    )


def bench_codec(seconds: float) -> None:
    regions = tuple(
        Region(
            x=(i % 16) * 64,
            y=(i // 16) * 64,
            width=64,
            height=64,
            encoding=Encoding.JPEG,
            data=os.urandom(900),
        )
        for i in range(64)
    )
    frame = Frame(frame_id=9, captured_at_ns=1, width=1920, height=1080, regions=regions)
    data = encode(frame)
    bare = [40, 9, True, 1, 1920, 1080, [[r.x, r.y, r.width, r.height, 1, r.data] for r in regions]]
    ours_enc = per_call(lambda: encode(frame), seconds)
    ours_dec = per_call(lambda: decode_inner(data), seconds)
    bare_enc = per_call(lambda: msgpack.packb(bare), seconds)
    bare_dec = per_call(lambda: msgpack.unpackb(data), seconds)
    print(f"Frame with 64 regions ({len(data) / 1024:.0f} KiB)")
    print(
        f"  encode {ours_enc * 1e6:7.1f} µs   bare msgpack {bare_enc * 1e6:6.1f} µs   "
        f"ratio {ours_enc / bare_enc:5.1f}x"
    )
    print(
        f"  decode {ours_dec * 1e6:7.1f} µs   bare msgpack {bare_dec * 1e6:6.1f} µs   "
        f"ratio {ours_dec / bare_dec:5.1f}x"
    )


def bench_pake(seconds: float) -> None:
    code = PhoneCode("482", "913775")

    def ours() -> None:
        c, a = Handshake(Party.CONSOLE, code), Handshake(Party.AGENT, code)
        pc, pa = c.start(), a.start()
        cc, ca = c.receive_pake(pa), a.receive_pake(pc)
        c.receive_confirm(ca)
        a.receive_confirm(cc)

    def bare() -> None:
        c, a = SPAKE2_A(b"913775"), SPAKE2_B(b"913775")
        pc, pa = c.start(), a.start()
        c.finish(pa)
        a.finish(pc)

    ours_s, bare_s = per_call(ours, seconds), per_call(bare, seconds)
    print("PAKE, both ends")
    print(
        f"  handshake + confirmation {ours_s * 1e3:.2f} ms   bare SPAKE2 {bare_s * 1e3:.2f} ms   "
        f"ratio {ours_s / bare_s:4.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    bench_seal(args.seconds)
    bench_frame_seal_vs_jpeg(args.seconds)
    bench_codec(args.seconds)
    bench_pake(args.seconds)


if __name__ == "__main__":
    main()
