"""Bad clients never disturb other sessions: random bytes, half requests, silent sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import encode
from protocol.messages import ClaimNameplate, RelayError, Sealed
from tests.relay.helpers import STEP_TIMEOUT, agent, console, paired
from tests.support.relay import RelayProcess, start_relay

MakeRelay = Callable[..., RelayProcess]

# Random bytes, and valid envelopes cut short or with a byte flipped: the
# decoder's interesting edges are near valid input, not in pure noise.
VALID = [
    encode(ClaimNameplate(nameplate="123", protocol_version=1)),
    encode(Sealed(box=b"abc")),
]
bad_messages = st.one_of(
    st.binary(min_size=0, max_size=64),
    st.sampled_from(VALID).flatmap(lambda v: st.integers(0, len(v) - 1).map(lambda n: v[:n])),
    st.sampled_from(VALID).flatmap(
        lambda v: st.tuples(st.integers(0, len(v) - 1), st.integers(0, 255)).map(
            lambda t: v[: t[0]] + bytes([t[1]]) + v[t[0] + 1 :]
        )
    ),
)


@pytest.fixture(scope="module")
def storm_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A relay whose claim limits do not get in the way of many bad claims."""
    high = {
        "claims_per_ip_per_minute": 10_000,
        "claims_per_minute": 10_000,
        "claim_attempts_per_ip_per_minute": 10_000,
    }
    process = start_relay(tmp_path_factory.mktemp("storm"), config=high)
    try:
        yield process
    finally:
        process.stop()


@settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(storm=st.lists(st.tuples(bad_messages, st.booleans()), min_size=10, max_size=25))
def test_random_input_to_both_endpoints_closes_only_that_connection(
    storm_relay: RelayProcess, storm: list[tuple[bytes, bool]]
) -> None:
    relay = storm_relay

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            token = relay.token()
            ticket = relay.create_ticket(token)
            con, ag, _ = await paired(http, relay, token, ticket["id"])
            for data, to_console in storm:
                end = await (console(http, relay, token) if to_console else agent(http, relay))
                await end.send_raw(data)
                # whatever it was, the relay answers (RelayError, then a close):
                # never silence, never a crash
                for _ in range(4):
                    msg = await end.ws.receive(timeout=STEP_TIMEOUT)
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        break
                else:
                    raise AssertionError(f"{data!r} was not answered with a close")
                await end.ws.close()
            # the paired session never noticed
            await ag.send(Sealed(box=b"after the storm"))
            assert (await con.expect(Sealed)).box == b"after the storm"
            await con.ws.close()
            await ag.closed()
        await asyncio.sleep(0.01)  # let closed transports finish before the loop ends

    asyncio.run(run())
    assert relay.api("GET", "/healthz")[0] == 200
    assert "internal error" not in relay.log()


async def test_half_open_sockets_are_closed_after_the_handshake_timeout(
    make_relay: MakeRelay, http: aiohttp.ClientSession
) -> None:
    relay = make_relay(config={"handshake_timeout": 1.0})
    token = relay.token()
    ticket = relay.create_ticket(token)
    port = int(relay.url.rsplit(":", 1)[1])
    for payload in (b"", b"GET /ws/agent HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as raw:
            raw.sendall(payload)
            assert raw.recv(1024) == b""  # the relay hung up on it
    # a WebSocket that upgrades and then says nothing is refused the same way
    silent = await agent(http, relay)
    error, _ = await silent.refused()
    assert isinstance(error, RelayError)
    # sessions are unaffected
    con, ag, _ = await paired(http, relay, token, ticket["id"])
    await con.send(Sealed(box=b"ok"))
    assert (await ag.expect(Sealed)).box == b"ok"
