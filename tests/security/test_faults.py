"""Faults: the relay killed, links cut, half-open sockets, an input flood, a full disk.

The agent is the real engine on Xvfb typing into a real Tk window; the relay is a
real process. Negative checks wait a short fixed while (QUIET) after the fact: a
bounded check, not a speed assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from agent.frontend import ConsentAnswer
from agent.runner import SessionRunner
from protocol.codec import decode_envelope, encode
from protocol.connection import PeerAwayEvent
from protocol.messages import (
    AllocateNameplate,
    AuditKind,
    AuditReport,
    Confirm,
    ConsentGranted,
    EndReason,
    Frame,
    MonitorLayout,
    Notice,
    NoticeCode,
    PointerMove,
    Pong,
    RelayError,
    RelayErrorCode,
    Rights,
    Sealed,
    TypeText,
)
from relay.api import STORAGE_FULL_MESSAGE
from relay.sessions import STORAGE_FULL_NEW, STORAGE_FULL_RUNNING
from tests.agent.conftest import TEST_LIMITS, AgentSide, until
from tests.agent.consultant import WAIT, Consultant
from tests.agent.linkproxy import LinkProxy
from tests.agent.scripted_ui import ScriptedUI
from tests.relay.helpers import allocate as allocate_nameplate
from tests.relay.helpers import close_code_for, console, paired
from tests.security.netns import AgentNamespace, AgentProcess, why_no_netns
from tests.security.smalldisk import (
    NamespacedRelay,
    fill,
    free,
    relay_on_small_disk,
    why_no_small_disk,
)
from tests.security.test_hostile_relay import start
from tests.support.relay import REPO, RelayProcess, running_relay, start_relay
from tests.support.targets import TargetWindow
from tests.support.xdisplay import XDisplay

QUIET = 0.6
LINK_LOST = "The connection was lost, so the session has ended. Nothing is shared any more."
HALF_OPEN = 1_000
FLOOD = 5_000


def agent_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("zgoda-injector", "zgoda-capture")) and t.is_alive()
    ]


def history(relay: RelayProcess, ticket_id: str) -> list[dict[str, object]]:
    status, reply = relay.api("GET", f"/api/tickets/{ticket_id}/history", token=relay.token())
    assert status == 200, reply
    return list(reply["events"])


@pytest.fixture
def own_relay(tmp_path: Path) -> Iterator[list[RelayProcess]]:
    """A relay this test may kill and restart; the list holds the current process."""
    processes = [start_relay(tmp_path / "relay", config=TEST_LIMITS)]
    try:
        yield processes
    finally:
        processes[-1].stop()


# ------------------------------------------------------------------ the relay dies


async def test_relay_killed_mid_session_stops_the_agent_and_the_audit_survives(
    own_relay: list[RelayProcess], xdisplay: XDisplay, target: TargetWindow
) -> None:
    relay = own_relay[0]
    consultant = Consultant(relay)
    side = AgentSide(relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL), resume_grace=1.0)
    try:
        runner = await start(side, consultant, None)
        target.animate()
        target.focus_entry()
        ticket_id = consultant.ticket["id"]
        await until(lambda: "consent.granted" in [e["kind"] for e in history(relay, ticket_id)])
        before = history(relay, ticket_id)
        relay.kill()  # SIGKILL: no goodbye to anyone
        await side.ended()
        await consultant.wait_until(lambda: consultant.closed.is_set())
        await consultant.send(TypeText(text="after the crash"))  # goes nowhere
    finally:
        side.stop()
        await consultant.close()
    assert side.ui.outcome is not None
    assert side.ui.outcome.reason is EndReason.PEER_LOST
    assert side.ui.outcome.message == LINK_LOST
    await until(lambda: not agent_threads())  # capture and injection are gone
    frames = runner.stats.frames_sent
    await asyncio.sleep(QUIET)
    assert runner.stats.frames_sent == frames
    assert target.entry_text() == ""

    restarted = relay.restart()
    own_relay.append(restarted)
    after = history(restarted, ticket_id)
    assert after[: len(before)] == before  # every committed receipt survived, unchanged
    verify = restarted.cli("audit", "verify")
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout, verify
    with contextlib.closing(sqlite3.connect(restarted.data_dir / "relay.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ------------------------------------------------------------------ the link drops


@pytest.fixture
async def link(shared_relay: RelayProcess) -> AsyncIterator[LinkProxy]:
    """A cuttable TCP proxy in front of the relay (`tests.agent.linkproxy`)."""
    proxy = LinkProxy(int(shared_relay.url.rsplit(":", 1)[1]))
    proxy.port = await proxy.start()  # type: ignore[attr-defined]
    try:
        yield proxy
    finally:
        await proxy.close()


def link_url(proxy: LinkProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"  # type: ignore[attr-defined]


def plain_consultant(relay: RelayProcess) -> Consultant:
    return Consultant(relay)


async def test_link_cut_and_restored_within_grace_loses_and_doubles_nothing(
    shared_relay: RelayProcess, xdisplay: XDisplay, target: TargetWindow, link: LinkProxy
) -> None:
    consultant = plain_consultant(shared_relay)
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL))
    url = link_url(link)
    try:
        runner = await start(side, consultant, None, relay_url=url)
        target.focus_entry()
        cut_at = time.monotonic()
        link.cut()
        await consultant.wait_for(PeerAwayEvent)
        away_at = time.monotonic()
        # typed while the agent is away: held by the console, resent after the resume
        await consultant.send(TypeText(text="typed during the outage"))
        await until(lambda: target.entry_text() == "typed during the outage")
        print(
            f"resume: peer away after {away_at - cut_at:.2f} s, "
            f"text typed {time.monotonic() - cut_at:.2f} s after the cut"
        )
        frames = consultant.count(Frame)
        await consultant.wait_until(lambda: consultant.count(Frame) > frames)
        print(f"resume: next frame {time.monotonic() - cut_at:.2f} s after the cut")
        await asyncio.sleep(QUIET)
        assert target.entry_text() == "typed during the outage"  # once, not twice
        assert not runner.finished
        assert link.connections >= 2  # it really reconnected
        stop_at = time.monotonic()
        runner.end()
        await consultant.ended()
        told_at = time.monotonic()
        await side.ended()
        print(
            f"resume: after the user's end the console knew in {told_at - stop_at:.2f} s, "
            f"the engine's thread finished in {time.monotonic() - stop_at:.2f} s"
        )
    finally:
        side.stop()
        await consultant.close()


async def test_link_cut_beyond_grace_ends_both_sides_and_nothing_arrives_later(
    shared_relay: RelayProcess, xdisplay: XDisplay, target: TargetWindow, link: LinkProxy
) -> None:
    consultant = plain_consultant(shared_relay)
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL), resume_grace=2.0)
    url = link_url(link)
    try:
        runner = await start(side, consultant, None, relay_url=url)
        target.focus_entry()
        link.refuse = True
        link.cut()
        await consultant.wait_for(PeerAwayEvent)
        await consultant.send(TypeText(text="lost in the outage"))
        await side.ended(WAIT)
        await consultant.ended(WAIT)
    finally:
        side.stop()
        await consultant.close()
    assert side.ui.outcome is not None
    assert side.ui.outcome.reason is EndReason.PEER_LOST
    assert side.ui.outcome.message == LINK_LOST
    await until(lambda: not agent_threads())
    link.refuse = False
    await asyncio.sleep(QUIET)
    assert target.entry_text() == ""
    assert runner.finished


# ------------------------------------------------------------------ the cable is pulled


@pytest.fixture
def agent_netns() -> Iterator[AgentNamespace]:
    """A network namespace for the agent and a veth pair to the host (root only)."""
    reason = why_no_netns()
    if reason is not None:
        pytest.skip(reason)
    with AgentNamespace.create() as ns:
        yield ns


@contextlib.contextmanager
def relay_for_netns(tmp_path: Path, ns: AgentNamespace, grace: float) -> Iterator[RelayProcess]:
    """A relay listening on the host's end of the pair (the consultant reaches it there
    too, locally); a 1 s WebSocket heartbeat so that it notices the cut in ~1.5 s."""
    config = {**TEST_LIMITS, "resume_grace": grace, "ping_interval": 1.0, "insecure": True}
    with running_relay(tmp_path / "relay", config=config, args=("--bind", ns.host_address)) as r:
        yield r


def agent_in(
    ns: AgentNamespace, relay: RelayProcess, code: object, xdisplay: XDisplay
) -> AgentProcess:
    return AgentProcess(
        ns, [relay.url, relay.pubkey, relay.org, str(code)], xdisplay.env, str(REPO)
    )


async def consented(consultant: Consultant) -> None:
    await consultant.wait_for(ConsentGranted)
    await consultant.wait_for(MonitorLayout)
    await consultant.wait_for(Frame)


async def test_cable_pulled_in_a_netns_and_plugged_back_within_grace_resumes(
    tmp_path: Path, agent_netns: AgentNamespace, xdisplay: XDisplay, target: TargetWindow
) -> None:
    """The agent runs in its own network namespace; its veth goes down and up again."""
    with relay_for_netns(tmp_path, agent_netns, grace=10.0) as relay:
        consultant = Consultant(relay)
        agent: AgentProcess | None = None
        try:
            agent = agent_in(agent_netns, relay, await consultant.open(), xdisplay)
            await consented(consultant)
            target.focus_entry()
            cut_at = time.monotonic()
            agent_netns.cut()
            await consultant.wait_for(PeerAwayEvent)
            away_at = time.monotonic()
            await agent.wait_for("phase", "RECONNECTING")
            noticed_at = time.monotonic()
            await consultant.send(TypeText(text="typed during the outage"))
            await asyncio.sleep(QUIET)
            assert target.entry_text() == ""  # the cable is out: nothing can arrive
            agent_netns.restore()
            restored_at = time.monotonic()
            try:
                await until(lambda: target.entry_text() == "typed during the outage")
            except AssertionError:
                # what each side did, for a failing run (the agent's log is on stderr)
                raise AssertionError(f"not typed: agent {agent.records}\n{relay.log()}") from None
            typed_at = time.monotonic()
            frames = consultant.count(Frame)
            await consultant.wait_until(lambda: consultant.count(Frame) > frames)
            print(
                f"netns resume: relay noticed the cut after {away_at - cut_at:.2f} s, the "
                f"agent after {noticed_at - cut_at:.2f} s; link down {restored_at - cut_at:.2f}"
                f" s; text typed {typed_at - restored_at:.2f} s after the link came back, "
                f"next frame {time.monotonic() - restored_at:.2f} s after"
            )
            await asyncio.sleep(QUIET)
            assert target.entry_text() == "typed during the outage"  # once, not twice
            assert agent.seen("ended") is None and agent.proc.poll() is None
            agent.end()
            assert (await consultant.ended()).reason is EndReason.USER_ENDED
            assert (await agent.wait_for("ended"))["ended"] == "USER_ENDED"
            await agent.wait_for("finished")
            kinds = [e["kind"] for e in history(relay, consultant.ticket["id"])]
            assert "session.link_lost" in kinds and "session.resumed" in kinds, kinds
        finally:
            if agent is not None:
                assert agent.stop() == 0
            await consultant.close()


async def test_cable_pulled_in_a_netns_beyond_grace_ends_both_and_nothing_arrives_later(
    tmp_path: Path, agent_netns: AgentNamespace, xdisplay: XDisplay, target: TargetWindow
) -> None:
    with relay_for_netns(tmp_path, agent_netns, grace=2.0) as relay:
        consultant = Consultant(relay)
        agent: AgentProcess | None = None
        try:
            agent = agent_in(agent_netns, relay, await consultant.open(), xdisplay)
            await consented(consultant)
            target.focus_entry()
            cut_at = time.monotonic()
            agent_netns.cut()
            await consultant.wait_for(PeerAwayEvent)
            await consultant.send(TypeText(text="lost in the outage"))
            ended = await consultant.ended(WAIT)
            console_at = time.monotonic()
            outcome = await agent.wait_for("ended")
            print(
                f"netns beyond grace (2 s): console ended {console_at - cut_at:.2f} s after "
                f"the cut, the agent {time.monotonic() - cut_at:.2f} s after"
            )
            await agent.wait_for("finished")
            assert agent.stop() == 0  # the engine's process ended on its own
            agent_netns.restore()  # the cable is back: nothing may arrive any more
            await asyncio.sleep(QUIET)
        finally:
            if agent is not None:
                agent.stop()
            await consultant.close()
    assert ended.reason is EndReason.PEER_LOST, ended
    assert outcome["ended"] == "PEER_LOST" and outcome["message"] == LINK_LOST, outcome
    assert target.entry_text() == ""


# ------------------------------------------------------------------ hostile load


async def test_a_thousand_half_open_connections_do_not_stop_a_live_session_or_a_new_one(
    shared_relay: RelayProcess, xdisplay: XDisplay, target: TargetWindow
) -> None:
    consultant = plain_consultant(shared_relay)
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL))
    port = shared_relay.url.rsplit(":", 1)[1]
    second = plain_consultant(shared_relay)
    other = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.VIEW_ONLY))
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.security.halfopen", port, str(HALF_OPEN)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        runner = await start(side, consultant, None)
        target.animate()
        target.focus_entry()
        assert holder.stdout is not None and holder.stdin is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 120)
        assert line.strip() == f"held {HALF_OPEN}", line
        # the live session goes on: input arrives, frames keep coming
        await consultant.send(TypeText(text="still here"))
        await until(lambda: target.entry_text() == "still here")
        frames = consultant.count(Frame)
        await consultant.wait_until(lambda: consultant.count(Frame) >= frames + 5)
        # and a new session can start while the sockets are held
        await start(other, second, None, rights=Rights.VIEW)
        assert not runner.finished
        holder.stdin.write("report\n")
        holder.stdin.flush()
        closed = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 60)
        assert closed.startswith("closed "), closed
        print(f"half-open: the relay had {closed.strip()} of {HALF_OPEN} sockets")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
        other.stop()
        side.stop()
        await second.close()
        await consultant.close()


def injector_idle(runner: SessionRunner) -> bool:
    """The injector's backlog is empty (reads the engine's private queue: a test aid)."""
    injector = runner._injector
    return injector is not None and injector._queue.empty()


async def test_an_input_flood_is_bounded_and_the_agent_stays_responsive(
    shared_relay: RelayProcess, xdisplay: XDisplay, target: TargetWindow
) -> None:
    consultant = plain_consultant(shared_relay)
    side = AgentSide(shared_relay, ScriptedUI(ConsentAnswer.ALLOW_CONTROL))
    try:
        runner = await start(side, consultant, None)
        target.focus_entry()
        assert consultant.conn is not None
        for i in range(FLOOD):  # queued in one go, sent back to back
            consultant.conn.send(PointerMove(x=400 + i % 200, y=300 + i % 100))
        consultant.conn.ping(4711)  # behind the whole flood in the same stream
        await consultant.flush()
        # the consultant is told that input was dropped, not left guessing
        notice = await consultant.wait_for(Notice, timeout=60)
        assert notice.code is NoticeCode.INFO and "dropped" in notice.text
        # the agent answers while its injector still works through the backlog
        pong = await consultant.wait_for(Pong, timeout=60)
        assert pong.nonce == 4711
        # bounded: at most MAX_QUEUED_INPUT wait, the rest was dropped and counted
        await until(lambda: injector_idle(runner), timeout=90)
        assert runner.stats.input_refused <= FLOOD
        await consultant.send(TypeText(text="after the flood"))
        await until(lambda: target.entry_text() == "after the flood")
        assert not runner.finished
        runner.end()  # the user can still end it
        await side.ended()
    finally:
        side.stop()
        await consultant.close()
    assert side.ui.outcome is not None and side.ui.outcome.reason is EndReason.USER_ENDED
    await until(lambda: not agent_threads())


# ------------------------------------------------------------------ the disk fills


def set_file_size_limit(pid: int, limit: str) -> None:
    """RLIMIT_FSIZE of the relay process (soft limit only, so it can be lifted again):
    with 0, every write to a file fails (EFBIG; Python ignores SIGXFSZ), which is what
    a full disk looks like to SQLite, without root or a mount."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--fsize={limit}:"], check=True, timeout=30)


async def allocate(relay: RelayProcess, token: str, ticket_id: str) -> object:
    async with connect(
        relay.ws_console_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(encode(AllocateNameplate(ticket_id=ticket_id)))
        return decode_envelope(await ws.recv())  # type: ignore[arg-type]


async def test_a_file_size_limit_refuses_new_sessions_clearly_and_writes_nothing_half(
    own_relay: list[RelayProcess],
) -> None:
    """EFBIG (RLIMIT_FSIZE), without root: SQLite's "disk I/O error" on a write is told
    apart from a broken disk by the process's own file size limit."""
    relay = own_relay[0]
    token = relay.token()
    ticket = relay.create_ticket(token)
    rows_before = relay.cli("audit", "verify").stdout
    set_file_size_limit(relay.pid, "0")
    try:
        refused = await allocate(relay, token, ticket["id"])
        status, reply = relay.api(
            "POST", "/api/tickets", {"caller_name": "X", "problem": "y"}, token=token
        )
    finally:
        set_file_size_limit(relay.pid, "unlimited")
    assert isinstance(refused, RelayError), refused
    assert refused.code is RelayErrorCode.STORAGE_FULL, refused
    assert refused.message == STORAGE_FULL_NEW
    assert status == 507 and reply["error"] == "storage_full", (status, reply)
    assert reply["message"] == STORAGE_FULL_MESSAGE
    # nothing half-written: the chain is intact and has no row for the refused requests
    verify = relay.cli("audit", "verify")
    assert verify.returncode == 0 and verify.stdout == rows_before, verify
    with contextlib.closing(sqlite3.connect(relay.data_dir / "relay.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # space is back: the same relay process serves again, without a restart
    allocated = await allocate(relay, token, ticket["id"])
    assert not isinstance(allocated, RelayError), allocated


def audit_and_tickets(relay: NamespacedRelay) -> tuple[str, list[Any], list[Any]]:
    """What must not change while the disk is full: `audit verify`'s report, the row
    counts, and SQLite's integrity check (all read inside the relay's namespace)."""
    verify = relay.cli("audit", "verify")
    assert verify.returncode == 0 and "audit chain intact" in verify.stdout, verify
    counts = relay.query(
        "SELECT (SELECT COUNT(*) FROM audit), (SELECT COUNT(*) FROM tickets),"
        " (SELECT COUNT(*) FROM tokens)"
    )
    return verify.stdout, counts, relay.query("PRAGMA integrity_check")


async def test_a_full_disk_refuses_new_sessions_clearly_and_the_same_relay_recovers(
    tmp_path: Path,
) -> None:
    """ENOSPC for real: the relay's data dir is a 1 MiB tmpfs (private mount namespace),
    filled by the test through /proc/PID/root."""
    reason = why_no_small_disk(tmp_path / "probe")
    if reason is not None:
        pytest.skip(reason)
    with relay_on_small_disk(tmp_path, "1m", TEST_LIMITS) as relay:
        token = relay.token()
        ticket = relay.create_ticket(token)
        async with aiohttp.ClientSession() as http:
            # a session keyed before the disk fills
            con, ag, _ = await paired(http, relay, token, ticket["id"])
            await con.send(Confirm(mac=b"c" * 32))
            await ag.expect(Confirm)
            await ag.send(Confirm(mac=b"a" * 32))
            await con.expect(Confirm)
            before = audit_and_tickets(relay)
            assert before[2] == [["ok"]]
            assert before[1][0][0] >= 4  # login, ticket, nameplate, pairing

            filled = fill(relay.data_dir)
            print(f"disk full: filler of {filled} bytes on the 1 MiB tmpfs")
            # new work is refused, in words a consultant can act on
            new_console = await console(http, relay, token)
            await new_console.send(AllocateNameplate(ticket_id=ticket["id"]))
            refused, close_code = await new_console.refused()
            assert refused.code is RelayErrorCode.STORAGE_FULL, refused
            assert refused.message == STORAGE_FULL_NEW
            assert close_code == close_code_for(RelayErrorCode.STORAGE_FULL)
            status, reply = relay.api(
                "POST", "/api/tickets", {"caller_name": "X", "problem": "y"}, token=token
            )
            assert (status, reply) == (
                507,
                {"error": "storage_full", "message": STORAGE_FULL_MESSAGE},
            )
            status, reply = relay.api(
                "POST", "/api/login", {"username": relay.username, "password": relay.password}
            )
            assert status == 507 and reply["error"] == "storage_full", (status, reply)

            # the running session: sealed traffic needs no disk and still flows ...
            await con.send(Sealed(box=b"\x00" * 8 + b"typed on a full disk" + b"\x01" * 16))
            assert (await ag.expect(Sealed)).box[8:28] == b"typed on a full disk"
            await ag.send(Sealed(box=b"\x00" * 8 + b"a frame" + b"\x02" * 16))
            assert (await con.expect(Sealed)).box[8:15] == b"a frame"
            # ... until a consent receipt cannot be logged: then both ends are told and end
            granted = AuditReport(kind=AuditKind.GRANTED, rights=int(Rights.CONTROL), detail="")
            await ag.send(granted)
            for end in (ag, con):
                error, code = await end.refused()
                assert error.code is RelayErrorCode.STORAGE_FULL, error
                assert error.message == STORAGE_FULL_RUNNING
                assert code == close_code_for(RelayErrorCode.STORAGE_FULL)

            # nothing half-written: the chain, its rows and the tickets are as before
            assert audit_and_tickets(relay) == before
            full_lines = [line for line in relay.log().splitlines() if "STORAGE FULL" in line]
            assert len(full_lines) == 1, full_lines  # one line for the admin, not one per refusal
            print(f"disk full: the admin's log line: {full_lines[0]}")

            # space is freed: the same process serves again, no restart
            free(relay.data_dir)
            again = relay.create_ticket(token)
            con2, allocated = await allocate_nameplate(http, relay, token, again["id"])
            assert allocated.nameplate
            await con2.ws.close()
            await new_console.ws.close()
            await ag.ws.close()
            await con.ws.close()
        assert "storage writable again" in relay.log()
        rows_after = relay.cli("audit", "verify")
        assert rows_after.returncode == 0 and "audit chain intact" in rows_after.stdout
        print(f"disk full: before {before[0].strip()!r}, after {rows_after.stdout.strip()!r}")
