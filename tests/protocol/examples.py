"""One valid example of every message, for round trips and the exhaustive table test."""

from __future__ import annotations

from protocol import messages as m

REGION = m.Region(x=0, y=0, width=64, height=64, encoding=m.Encoding.JPEG, data=b"\xff\xd8jpeg")
# Encoding.H264 (appended by the streaming issue): a whole-monitor access unit
VIDEO = m.Region(
    x=0, y=0, width=1920, height=1080, encoding=m.Encoding.H264, data=b"\x00\x00\x00\x01e"
)
# Encoding.COPY (appended by the streaming issue): a scroll, from the source corner (0, 17)
SCROLL = m.Region(
    x=0, y=0, width=1920, height=1000, encoding=m.Encoding.COPY, data=b"\x00\x00\x00\x11"
)
MONITOR = m.Monitor(
    index=0, x=0, y=0, width=1920, height=1080, scale_percent=125, primary=True, name="DP-1"
)

EXAMPLES: dict[type[m.Message], m.Message] = {
    m.AllocateNameplate: m.AllocateNameplate(ticket_id="HD-1042"),
    m.NameplateAllocated: m.NameplateAllocated(
        nameplate="482", expires_at=1_790_000_000.5, attestation=b"signed"
    ),
    m.ClaimNameplate: m.ClaimNameplate(nameplate="482", protocol_version=1),
    m.Claimed: m.Claimed(expires_at=1_790_000_000.0),
    m.PeerJoined: m.PeerJoined(),
    m.PeerLeft: m.PeerLeft(),
    m.SessionOpened: m.SessionOpened(
        session_id="s-9f2", resume_token=bytes(16), resume_grace_seconds=30.0
    ),
    m.Resume: m.Resume(session_id="s-9f2", token=bytes(16)),
    m.Resumed: m.Resumed(),
    m.PeerAway: m.PeerAway(grace_seconds=30.0),
    m.PeerReturned: m.PeerReturned(),
    m.Rewind: m.Rewind(next_counter=12),
    m.Pake: m.Pake(body=bytes(33)),
    m.Confirm: m.Confirm(mac=bytes(32)),
    m.Sealed: m.Sealed(box=bytes(40)),
    m.Abort: m.Abort(reason=m.AbortReason.WRONG_CODE),
    m.AuditReport: m.AuditReport(kind=m.AuditKind.GRANTED, rights=2, detail=""),
    m.RelayError: m.RelayError(
        code=m.RelayErrorCode.OUTSIDE_HOURS, message="Hotline: Mon–Fri 8–18", retry_after=60.0
    ),
    m.SessionRequest: m.SessionRequest(
        consultant="Anna Nowak",
        ticket_id="HD-1042",
        ticket_title="Drukarka nie drukuje",
        rights=m.Rights.CONTROL,
        attestation=b"signed",
    ),
    m.ConsentPending: m.ConsentPending(timeout_seconds=120.0),
    m.ConsentGranted: m.ConsentGranted(rights=m.Rights.VIEW),
    m.ConsentDenied: m.ConsentDenied(reason=m.DenyReason.TIMEOUT),
    m.RightsRequest: m.RightsRequest(rights=m.Rights.CONTROL),
    m.HandBackRequest: m.HandBackRequest(),
    m.HandBackStarted: m.HandBackStarted(by=m.Party.CONSOLE),
    m.HandBackEnded: m.HandBackEnded(),
    m.Frame: m.Frame(
        frame_id=7,
        final=True,
        captured_at_ns=123,
        width=1920,
        height=1080,
        regions=(REGION, VIDEO, SCROLL),
    ),
    m.FrameAck: m.FrameAck(frame_id=7),
    m.Cursor: m.Cursor(
        x=-5,
        y=10,
        visible=True,
        shape=m.CursorShape(width=2, height=2, hot_x=1, hot_y=0, rgba=bytes(16)),
    ),
    m.MonitorLayout: m.MonitorLayout(monitors=(MONITOR,), selected=0),
    m.SelectMonitor: m.SelectMonitor(index=0),
    m.PointerMove: m.PointerMove(x=100, y=200),
    m.PointerButton: m.PointerButton(button=m.MouseButton.LEFT, down=True, x=1, y=2),
    m.Scroll: m.Scroll(dx=0, dy=-3, x=5, y=5),
    m.KeyEvent: m.KeyEvent(key="ą", down=True, modifiers=m.Modifiers.ALTGR),
    m.TypeText: m.TypeText(text="zażółć gęślą jaźń"),
    m.ClipboardText: m.ClipboardText(text="C:\\Users\\anna"),
    m.Ping: m.Ping(nonce=1, sent_at_ns=2),
    m.Pong: m.Pong(nonce=1, sent_at_ns=2),
    m.Delivered: m.Delivered(next_counter=64),
    m.Notice: m.Notice(code=m.NoticeCode.SECURE_DESKTOP, text="the user must answer a prompt"),
    m.End: m.End(by=m.Party.AGENT, reason=m.EndReason.USER_ENDED, detail=""),
}
