"""`zgoda demo`: relay, agent and console on this machine.

With a screen (``DISPLAY`` set and answering) it starts a relay, the employee's
tray agent and the consultant's desktop app, and prints how to log in: a person
plays both parts.

Without one (or with ``--headless``) it plays a whole helpdesk call on virtual
screens, every part real: a relay process with a self-signed certificate pinned
by both ends; the tray agent (``zgoda tray``) on an Xvfb screen with a window
manager and a notepad; the consultant's client library. The employee's clicks
are xdotool's, on the real dialogs. It leaves screenshots of both sides and a
session report (``session-report.md`` and ``.json``) in ``--out``.

    zgoda demo [--headless] [--out demo-output] [--in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.client import ConsoleClient
from console.png import save_png
from console.session import Phase

ORG = "Urząd Miasta Przykładowo"
LANGUAGE = "pl"  # the service is Polish
GI_DIR = Path("/usr/lib/python3/dist-packages/gi")
"""Debian's PyGObject, for pystray's GTK backend; only `gi` goes on the path."""
CONSULTANT = ("anna", "Anna Nowak", "demo-password-1")
WAIT = 30.0
STEP = 0.05

NOTEPAD_TITLE = "Notatnik - zgoda demo"
NOTEPAD = textwrap.dedent(
    """
    import sys, tkinter as tk
    path = sys.argv[1]
    root = tk.Tk()
    root.title("NOTEPAD_TITLE")
    root.geometry("760x420+60+80")
    text = tk.Text(root, font=("DejaVu Sans", 16), wrap="word")
    text.pack(fill="both", expand=True)
    def save(_event=None):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.get("1.0", "end-1c"))
    text.bind("<KeyRelease>", save)
    root.after(200, save)
    root.mainloop()
    """
).replace("NOTEPAD_TITLE", NOTEPAD_TITLE)


class DemoError(RuntimeError):
    """A step of the scripted call did not happen; the message says which."""


@dataclass
class Report:
    steps: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def step(self, what: str, **facts: Any) -> None:
        elapsed = time.monotonic() - self.started
        self.steps.append({"t": round(elapsed, 2), "step": what, **facts})
        shown = ", ".join(f"{k}={v}" for k, v in facts.items())
        print(f"  [{elapsed:6.2f}s] {what}" + (f"  ({shown})" if shown else ""), flush=True)


# ------------------------------------------------------------------ processes


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _zgoda(*args: str) -> list[str]:
    return [sys.executable, "-m", "protocol.cli", *args]


@contextmanager
def virtual_screen(width: int, height: int, logs: Path) -> Iterator[dict[str, str]]:
    """An Xvfb screen with what a Linux desktop gives a tray app: a window manager
    (openbox), a session bus, a notification daemon (dunst) and a system tray
    (trayer); yields the environment that points at it, with pystray's GTK backend."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise DemoError("Xvfb did not start")
        env = {**os.environ, "DISPLAY": f":{number}", "NO_AT_BRIDGE": "1"}
        env.pop("WAYLAND_DISPLAY", None)
        with ExitStack() as desktop, tempfile.TemporaryDirectory(prefix="zgoda-gi-") as gi:
            if GI_DIR.is_dir():
                (Path(gi) / "gi").symlink_to(GI_DIR)
                env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), gi) if p)
                env["PYSTRAY_BACKEND"] = "gtk"
            bus = subprocess.Popen(
                ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            desktop.callback(_stop, bus)
            assert bus.stdout is not None
            env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().decode().strip()
            for name, command in (
                ("openbox", ["openbox"]),
                ("dunst", ["dunst"]),
                (
                    "trayer",
                    [
                        "trayer",
                        "--edge",
                        "top",
                        "--align",
                        "right",
                        "--widthtype",
                        "pixel",
                        "--width",
                        "200",
                        "--heighttype",
                        "pixel",
                        "--height",
                        "32",
                    ],
                ),
            ):
                desktop.callback(_stop, _spawn(command, env, logs / f"{name}.log"))
            yield env
    finally:
        _stop(xvfb)


@dataclass
class Relay:
    url: str
    pubkey: str
    fingerprint: str
    proc: subprocess.Popen[str]


def start_relay(data: Path, logs: Path) -> Relay:
    data.mkdir(parents=True, exist_ok=True)
    username, name, password = CONSULTANT
    add = subprocess.run(
        [
            *_zgoda("relay", "consultant", "add", username, "--name", name, "--password-stdin"),
            "--data-dir",
            str(data),
        ],
        input=password,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if add.returncode != 0 and "exists" not in add.stderr:
        raise DemoError(f"could not add the consultant: {add.stderr.strip()}")
    log = (logs / "relay.log").open("w")
    proc = subprocess.Popen(
        [
            *_zgoda(
                "relay",
                "serve",
                "--data-dir",
                str(data),
                "--port",
                "0",
                "--org",
                ORG,
                "--dev-tls",
                "--hours",
                "always",
            )
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    url = fingerprint = ""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not (url and fingerprint):
        line = proc.stdout.readline()
        if not line:
            break
        if "fingerprint" in line.lower():
            fingerprint = line.rsplit(maxsplit=1)[-1].strip()
        if "listening on" in line:
            url = line.rsplit(maxsplit=1)[-1].strip()
    if not url:
        _stop(proc)
        raise DemoError(f"the relay did not start; see {logs / 'relay.log'}")
    pubkey = subprocess.run(
        [*_zgoda("relay", "pubkey"), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    return Relay(url, pubkey, fingerprint.replace(":", "").lower(), proc)


# ------------------------------------------------------------ the employee's screen


class Screen:
    """What the employee's hands and eyes do on one X screen, with xdotool and ImageMagick."""

    def __init__(self, env: dict[str, str], shots: Path) -> None:
        self.env, self.shots = env, shots

    def xdotool(self, *args: str) -> str:
        result = subprocess.run(
            ["xdotool", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        return result.stdout

    def find(self, title: str) -> list[int]:
        """Visible windows titled exactly `title`.

        xdotool's `search --name` matches WM_NAME, which Tk writes as compound text
        when a title is not Latin-1 (Polish is not): search by the title's first
        word, then compare the UTF-8 name `getwindowname` reads."""
        word = re.escape(title.split()[0])
        found = self.xdotool("search", "--onlyvisible", "--name", word).split()
        return [int(w) for w in found if self.xdotool("getwindowname", w).rstrip("\n") == title]

    async def window(self, title: str) -> int:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = self.find(title)
            if found:
                return found[-1]
            await asyncio.sleep(STEP)
        raise DemoError(f"no window {title!r} appeared")

    async def gone(self, title: str) -> None:
        deadline = time.monotonic() + WAIT
        while self.find(title):
            if time.monotonic() > deadline:
                raise DemoError(f"window {title!r} did not close")
            await asyncio.sleep(STEP)

    def buttons(self, window: int) -> list[tuple[int, int]]:
        """Centres of the mapped leaf windows of a Tk top-level, in creation order."""
        from Xlib import X
        from Xlib import display as xdisplay

        conn = xdisplay.Display(self.env["DISPLAY"])
        try:
            leaves: list[tuple[int, int]] = []

            def walk(win: Any) -> None:
                children = win.query_tree().children
                mapped = [c for c in children if c.get_attributes().map_state == X.IsViewable]
                if not mapped:
                    geometry = win.get_geometry()
                    origin = win.translate_coords(conn.screen().root, 0, 0)
                    leaves.append(
                        (-origin.x + geometry.width // 2, -origin.y + geometry.height // 2)
                    )
                for child in mapped:
                    walk(child)

            walk(conn.create_resource_object("window", window))
            return leaves
        finally:
            conn.close()

    async def click(self, point: tuple[int, int]) -> None:
        self.xdotool("mousemove", "--sync", str(point[0]), str(point[1]), "click", "1")
        await asyncio.sleep(0.2)

    def screenshot(self, name: str) -> str:
        path = self.shots / name
        subprocess.run(
            ["import", "-window", "root", str(path)],
            env=self.env,
            timeout=WAIT,
            check=True,
            capture_output=True,
        )
        return str(path)


# ------------------------------------------------------------------- the call


async def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for: {what}")
        await asyncio.sleep(STEP)


async def scripted_call(out: Path) -> dict[str, Any]:
    """The whole call on virtual screens; returns the report it also writes."""
    from agent.ui.strings import Strings

    strings = Strings(LANGUAGE)
    shots, logs = out / "screenshots", out / "logs"
    for folder in (shots, logs):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    report = Report()
    print("zgoda demo: a helpdesk call on virtual screens (every part real)")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="zgoda-demo-") as tmp:
        relay = start_relay(Path(tmp) / "relay", logs)
        stack.callback(_stop, relay.proc)
        report.step("relay started", url=relay.url, tls_pin=relay.fingerprint[:16] + "…")

        env = stack.enter_context(virtual_screen(1280, 800, logs))
        screen = Screen(env, shots)
        notes = Path(tmp) / "notepad.txt"
        notepad = _spawn([sys.executable, "-c", NOTEPAD, str(notes)], env, logs / "notepad.log")
        stack.callback(_stop, notepad)
        await screen.window(NOTEPAD_TITLE)

        config = Path(tmp) / "agent.toml"
        config.write_text(
            f'relay_url = "{relay.url}"\nrelay_key = "{relay.pubkey}"\n'
            f'tls_pin = "{relay.fingerprint}"\norg_name = "{ORG}"\nlanguage = "{LANGUAGE}"\n',
            encoding="utf-8",
        )
        agent_env = {**env, "XDG_RUNTIME_DIR": str(Path(tmp) / "runtime")}
        Path(agent_env["XDG_RUNTIME_DIR"]).mkdir(mode=0o700)
        tray = _spawn(_zgoda("tray", "--config", str(config)), agent_env, logs / "tray.log")
        stack.callback(_stop, tray)
        report.step("employee's agent started: tray icon, no connection yet")

        username, _, password = CONSULTANT
        async with ConsoleClient(relay.url, tls_pin=relay.fingerprint) as client:
            await client.login(username, password)
            ticket = await client.create_ticket(
                caller_name="Jan Kowalski",
                company=ORG,
                phone="+48 22 555 01 02",
                problem="Outlook nie uruchamia się po aktualizacji",
            )
            report.step("consultant logged in and registered the ticket", ticket=ticket.id)
            session = await client.start_session(ticket)
            code = str(session.code)
            report.step("code read over the phone", code=code)

            dialog = await screen.window(strings.get("code.title"))
            screen.xdotool("windowactivate", "--sync", str(dialog))
            screen.xdotool("type", "--delay", "40", code)
            shot = screen.screenshot("employee-1-code.png")
            await screen.click(screen.buttons(dialog)[-2])  # Connect, Cancel
            report.step("employee typed the code and clicked Connect", screenshot=shot)

            prompt = await screen.window(strings.get("consent.title"))
            await _until(
                "the consultant waits for consent",
                lambda: session.phase is Phase.WAITING_FOR_CONSENT,
            )
            try:
                session.type_text("before consent")
                early = "sent?!"
            except Exception as exc:  # noqa: BLE001 - shown in the report as what happened
                early = f"refused: {type(exc).__name__}"
            shot = screen.screenshot("employee-2-consent.png")
            report.step(
                "consent prompt names the consultant and the ticket",
                screenshot=shot,
                input_before_consent=early,
            )
            allow = screen.buttons(prompt)[-3]  # Allow, View only, Deny
            await screen.click(allow)
            await _until("control granted", lambda: session.phase is Phase.CONTROLLING)
            await session.wait_frames(3, WAIT)
            report.step("employee clicked Allow", phase=session.phase.name)

            fb = session.framebuffer.copy()
            save_png(fb, shots / "consultant-1-view.png")
            report.step(
                "consultant sees the screen",
                screenshot=str(shots / "consultant-1-view.png"),
                size=f"{fb.shape[1]}x{fb.shape[0]}",
            )

            session.pointer_move(400, 300)
            session.pointer_button(_left(), True, 400, 300)
            session.pointer_button(_left(), False, 400, 300)
            message = "Dzień dobry, tu helpdesk. Zażółć gęślą jaźń."
            await asyncio.sleep(0.5)
            session.type_text(message)
            await _until(
                "the text arrived in the notepad",
                lambda: message in notes.read_text(encoding="utf-8"),
            )
            shot = screen.screenshot("employee-3-typed.png")
            report.step(
                "consultant clicked into the notepad and typed",
                text=message,
                arrived=True,
                screenshot=shot,
            )

            session.hand_back()
            await _until("hand-back", lambda: session.phase is Phase.HAND_BACK)
            banner = await screen.window(strings.get("banner.title"))
            frames_at_hand_back = session.stats.frames
            screen.xdotool("windowactivate", "--sync", str(await screen.window(NOTEPAD_TITLE)))
            typed = " [hasło wpisane przez pracownika]"  # what the employee types
            screen.xdotool("type", "--delay", "30", typed)
            await _until(
                "the password is in the notepad",
                lambda: typed in notes.read_text(encoding="utf-8"),
            )
            await asyncio.sleep(1.0)  # a stream would have sent several frames by now
            frames_during = session.stats.frames - frames_at_hand_back
            save_png(session.framebuffer.copy(), shots / "consultant-2-hand-back.png")
            shot = screen.screenshot("employee-4-hand-back.png")
            report.step(
                "consultant handed the keyboard back; employee typed a password",
                screenshot=shot,
                frames_to_consultant_meanwhile=frames_during,
            )
            await screen.click(screen.buttons(banner)[-1])  # Done
            await _until("control again", lambda: session.phase is Phase.CONTROLLING)
            await session.wait_frames(frames_at_hand_back + 1, WAIT)
            save_png(session.framebuffer.copy(), shots / "consultant-3-after-done.png")
            report.step(
                "employee clicked Done: the consultant sees the screen again",
                phase=session.phase.name,
                screenshot=str(shots / "consultant-3-after-done.png"),
            )

            await session.end("solved on the phone")
            await screen.gone(strings.get("bar.title"))
            shot = screen.screenshot("employee-5-ended.png")
            report.step("consultant ended the session", screenshot=shot)
            history = await client.history(ticket.id)
            for _ in range(50):  # the agent's last receipt may still be on its way
                if any(e.get("kind") == "consent.ended" for e in history):
                    break
                await asyncio.sleep(0.1)
                history = await client.history(ticket.id)
            await client.close_ticket(ticket.id, "Outlook repaired")

        audit = subprocess.run(
            [*_zgoda("relay", "audit", "verify"), "--data-dir", str(Path(tmp) / "relay")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        report.step("audit chain verified", ok=audit.returncode == 0)
        summary = {
            "code": code,
            "ticket": ticket.id,
            "input_before_consent": early,
            "typed_text_arrived": message in notes.read_text(encoding="utf-8"),
            "frames_during_hand_back": frames_during,
            "audit_events": [e.get("kind") or e.get("event") for e in history],
            "audit_verify": audit.stdout.strip() or audit.stderr.strip(),
            "steps": report.steps,
        }
    (out / "session-report.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    _write_markdown(out / "session-report.md", summary)
    print(f"report: {out / 'session-report.md'}; screenshots in {shots}")
    return summary


def _left() -> Any:
    from protocol.messages import MouseButton

    return MouseButton.LEFT


def _write_markdown(path: Path, summary: dict[str, Any]) -> None:
    lines = [
        "# zgoda demo: one helpdesk call",
        "",
        f"Code read over the phone: `{summary['code']}`",
        f"Ticket: `{summary['ticket']}`",
        "",
        "| t (s) | step | facts |",
        "|---|---|---|",
    ]
    for step in summary["steps"]:
        facts = ", ".join(f"{k}: {v}" for k, v in step.items() if k not in ("t", "step"))
        lines.append(f"| {step['t']} | {step['step']} | {facts} |")
    lines += ["", "Audit log of the ticket (from the relay):", ""]
    lines += [f"- {event}" for event in summary["audit_events"]]
    lines += [
        "",
        f"Frames the consultant received while the employee typed the password: "
        f"{summary['frames_during_hand_back']}",
        "",
    ]
    lines += [f"Audit chain: {summary['audit_verify']}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def interactive(out: Path) -> int:
    """A real screen: start the parts and let a person play both roles."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zgoda-demo-") as tmp:
        relay = start_relay(Path(tmp) / "relay", logs)
        config = Path(tmp) / "agent.toml"
        config.write_text(
            f'relay_url = "{relay.url}"\nrelay_key = "{relay.pubkey}"\n'
            f'tls_pin = "{relay.fingerprint}"\norg_name = "{ORG}"\n',
            encoding="utf-8",
        )
        env = dict(os.environ)
        procs: list[subprocess.Popen[Any]] = [
            relay.proc,
            _spawn(_zgoda("tray", "--config", str(config), "--no-help"), env, logs / "tray.log"),
            _spawn(_zgoda("console"), env, logs / "console.log"),
        ]
        username, _, password = CONSULTANT
        print(f"relay {relay.url} (certificate sha256 {relay.fingerprint})")
        print(
            f"console: log in as {username!r} with password {password!r}; register a ticket;"
            " start a session; type the code into the tray's Get help dialog."
        )
        print("Ctrl+C ends the demo.")
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in reversed(procs):
                _stop(proc)
    return 0


def _has_screen() -> bool:
    if not os.environ.get("DISPLAY"):
        return False
    probe = subprocess.run(["xdpyinfo"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zgoda demo", description=__doc__.splitlines()[0])
    parser.add_argument("--headless", action="store_true", help="virtual screens, scripted")
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only the protocol: two in-process peers, no sockets",
    )
    args = parser.parse_args(argv)
    if args.in_process:
        from protocol import demo

        demo.run(args.out / "protocol-session.json")
        return 0
    if not args.headless and _has_screen():
        return interactive(args.out)
    try:
        asyncio.run(scripted_call(args.out))
    except DemoError as exc:
        print(f"zgoda demo: {exc}; logs in {args.out / 'logs'}", file=sys.stderr)
        return 1
    return 0
