"""The relay's storage: consultants, tokens, tickets and the hash-chained audit log.

`Store` is the small interface the rest of the relay uses; `SQLiteStore` is the
embedded default (one file in the data dir, WAL, `synchronous=FULL` so that a
committed audit row survives `kill -9` and a power cut). A PostgreSQL store can
implement the same methods later. Methods are synchronous: the server calls
them from one worker thread (`relay.app`), the admin CLI calls them directly.

The audit table is append-only: SQLite triggers refuse UPDATE and DELETE, and
each row carries the SHA-256 of the previous row's hash and its own contents,
so `verify_audit()` finds any row changed, removed or inserted by someone who
bypassed the triggers.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import resource
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

GENESIS_HASH = "0" * 64
DB_NAME = "relay.sqlite3"


class StoreError(Exception):
    """A storage request that cannot be done as asked (duplicate name, unknown row)."""


class StorageFull(Exception):
    """A write failed for want of space (disk or quota full, or the process's file size
    limit reached); the transaction was rolled back, nothing of it was kept. Not a
    StoreError: the request was fine, the disk is not, and it works again once space
    is freed."""


# sqlite3's primary result code for "database or disk is full" and the extended code of
# a failed write(2), which is how an EFBIG (RLIMIT_FSIZE) write reaches SQLite.
SQLITE_FULL = 13
SQLITE_IOERR_WRITE = 778
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def is_storage_full(exc: BaseException, path: Path | None = None) -> bool:
    """Whether `exc` means the store ran out of space.

    SQLite reports ENOSPC as SQLITE_FULL; any other failed write(2), EFBIG included, as
    SQLITE_IOERR_WRITE without the errno. For the latter, `path` (the database file) is
    checked: no free blocks left on its filesystem, or a file size limit (RLIMIT_FSIZE)
    the file has reached, count as full; anything else is a real I/O error.
    """
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == SQLITE_FULL:
        return True
    if code != SQLITE_IOERR_WRITE or path is None:
        return False
    try:
        if os.statvfs(path.parent).f_bavail == 0:
            return True
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft == resource.RLIM_INFINITY:
            return False
    except OSError:
        return False
    wal = path.with_name(path.name + "-wal")
    largest = max((p.stat().st_size for p in (path, wal) if p.exists()), default=0)
    # a write near the limit fails though the file is still below it: allow 1 MiB
    return largest + (1 << 20) > soft


@dataclass(frozen=True, slots=True)
class Consultant:
    id: int
    username: str
    display_name: str
    password_hash: str
    totp_secret: bytes | None
    disabled: bool
    failed_logins: int
    locked_until: float
    lockouts: int
    last_totp_step: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    title: str
    caller_name: str
    company: str
    phone: str
    problem: str
    status: str
    consultant: str
    consultant_id: int
    created_at: float
    closed_at: float | None
    resolution: str

    def to_json(self) -> dict[str, Any]:
        """The ticket JSON of the wire contract."""
        return {
            "id": self.id,
            "title": self.title,
            "caller_name": self.caller_name,
            "company": self.company,
            "phone": self.phone,
            "problem": self.problem,
            "status": self.status,
            "consultant": self.consultant,
            "created_at": self.created_at,
            "closed_at": self.closed_at,
            "resolution": self.resolution,
        }


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: float
    kind: str
    ticket_id: str
    session_id: str
    actor: str
    ip: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "ticket_id": self.ticket_id,
            "session_id": self.session_id,
            "actor": self.actor,
            "ip": self.ip,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """Where the chain breaks and why."""

    seq: int
    reason: str


def audit_hash(prev_hash: str, row: tuple[Any, ...]) -> str:
    """SHA-256 over the previous hash and a canonical JSON of the row's fields."""
    body = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


class Store(Protocol):
    """What the relay needs from storage. Every method may raise StoreError; every
    method that writes may raise StorageFull (nothing of that call is kept)."""

    def add_consultant(
        self, username: str, display_name: str, password_hash: str, totp_secret: bytes | None
    ) -> Consultant: ...
    def consultant(self, username: str) -> Consultant | None: ...
    def consultant_by_id(self, consultant_id: int) -> Consultant | None: ...
    def consultants(self) -> list[Consultant]: ...
    def set_disabled(self, username: str, disabled: bool) -> None: ...
    def set_password(self, username: str, password_hash: str) -> None: ...
    def set_totp(self, username: str, totp_secret: bytes | None) -> None: ...
    def record_login_failure(
        self, consultant_id: int, max_failures: int, base: float, cap: float, now: float
    ) -> float: ...
    def record_login_success(self, consultant_id: int, totp_step: int | None) -> None: ...
    def add_token(
        self, token_hash: str, consultant_id: int, now: float, expires: float
    ) -> None: ...
    def token_owner(self, token_hash: str, now: float) -> Consultant | None: ...
    def revoke_token(self, token_hash: str) -> None: ...
    def revoke_tokens_of(self, username: str) -> int: ...
    def add_ticket(
        self,
        *,
        title: str,
        caller_name: str,
        company: str,
        phone: str,
        problem: str,
        consultant_id: int,
        now: float,
    ) -> Ticket: ...
    def ticket(self, ticket_id: str) -> Ticket | None: ...
    def tickets(self, status: str, consultant_id: int | None) -> list[Ticket]: ...
    def close_ticket(self, ticket_id: str, resolution: str, now: float) -> Ticket: ...
    def append_audit(
        self,
        kind: str,
        *,
        ticket_id: str = "",
        session_id: str = "",
        actor: str = "",
        ip: str = "",
        detail: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> AuditRow: ...
    def audit(self, ticket_id: str | None = None) -> list[AuditRow]: ...
    def verify_audit(self) -> tuple[int, list[AuditProblem]]: ...
    def close(self) -> None: ...


# Each entry migrates the schema from version N to N+1; never edit one, append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE consultants (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        totp_secret BLOB,
        disabled INTEGER NOT NULL DEFAULT 0,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0,
        lockouts INTEGER NOT NULL DEFAULT 0,
        last_totp_step INTEGER NOT NULL DEFAULT -1,
        created_at REAL NOT NULL
    );
    CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY,
        consultant_id INTEGER NOT NULL REFERENCES consultants(id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tickets (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        caller_name TEXT NOT NULL,
        company TEXT NOT NULL,
        phone TEXT NOT NULL,
        problem TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        consultant_id INTEGER NOT NULL REFERENCES consultants(id),
        created_at REAL NOT NULL,
        closed_at REAL,
        resolution TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        ip TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_ticket ON audit(ticket_id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
)

TICKET_FIRST_NUMBER = 1001


class SQLiteStore:
    """`Store` on one SQLite file. Use from one thread at a time.

    Raises:
        StoreError: from the methods, for requests that cannot be done.
        StorageFull: from a write when the disk is full (rolled back; retry later).
        sqlite3.Error: for a damaged or unwritable database (an operator problem).
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_NAME
        # isolation_level=None: we write BEGIN/COMMIT ourselves so that every
        # audit append is its own durable transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is fsynced into the WAL, so `kill -9` or a power cut
        # after a commit returns loses nothing (NORMAL could lose the last ones).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    # -- plumbing

    def _migrate(self) -> None:
        with self._transaction():
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                self._db.execute("INSERT INTO schema_version VALUES (0)")
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"database schema {version} is newer than this relay knows "
                    f"({len(MIGRATIONS)}): upgrade the relay"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in _split_sql(MIGRATIONS[number]):
                    self._db.execute(statement)
                self._db.execute("UPDATE schema_version SET version = ?", (number + 1,))

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    class _Tx:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error, COMMIT's own included.

        A COMMIT that fails (disk full) may leave the transaction open, and SQLite
        rolls some failures back by itself: either way the connection must end up
        outside any transaction, or every later BEGIN would fail ("cannot start a
        transaction within a transaction") and the relay would stay broken after
        space is freed. Raises StorageFull for a write that failed for want of space.
        """

        def __init__(self, db: sqlite3.Connection, path: Path) -> None:
            self.db, self.path = db, path

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._raise_if_full(exc)
                raise
            return self.db

        def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
            if exc is None:
                try:
                    self.db.execute("COMMIT")
                except sqlite3.Error as failed:
                    self._rollback()
                    self._raise_if_full(failed)
                    raise
                return
            self._rollback()
            self._raise_if_full(exc)

        def _rollback(self) -> None:
            # SQLite may already have rolled back (SQLITE_FULL can): the original
            # error is the one to report, not ROLLBACK's "no transaction is active".
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")

        def _raise_if_full(self, exc: BaseException) -> None:
            if is_storage_full(exc, self.path):
                raise StorageFull(f"{self.path}: {exc}") from exc

    def _transaction(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self._db, self.path)

    def close(self) -> None:
        self._db.close()

    # -- consultants

    _CONSULTANT_COLUMNS = (
        "id, username, display_name, password_hash, totp_secret, disabled, failed_logins, "
        "locked_until, lockouts, last_totp_step, created_at"
    )

    @staticmethod
    def _consultant(row: tuple[Any, ...] | None) -> Consultant | None:
        if row is None:
            return None
        values = list(row)
        values[5] = bool(values[5])
        return Consultant(*values)

    def add_consultant(
        self, username: str, display_name: str, password_hash: str, totp_secret: bytes | None
    ) -> Consultant:
        """Raises StoreError when the username exists."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO consultants (username, display_name, password_hash, totp_secret,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (username, display_name, password_hash, totp_secret, time.time()),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"consultant {username!r} already exists") from None
        found = self.consultant(username)
        assert found is not None
        return found

    def consultant(self, username: str) -> Consultant | None:
        row = self._db.execute(
            f"SELECT {self._CONSULTANT_COLUMNS} FROM consultants WHERE username = ?",  # noqa: S608
            (username,),
        ).fetchone()
        return self._consultant(row)

    def consultant_by_id(self, consultant_id: int) -> Consultant | None:
        row = self._db.execute(
            f"SELECT {self._CONSULTANT_COLUMNS} FROM consultants WHERE id = ?",  # noqa: S608
            (consultant_id,),
        ).fetchone()
        return self._consultant(row)

    def consultants(self) -> list[Consultant]:
        rows = self._db.execute(
            f"SELECT {self._CONSULTANT_COLUMNS} FROM consultants ORDER BY username"  # noqa: S608
        ).fetchall()
        return [c for c in map(self._consultant, rows) if c is not None]

    def _update_consultant(self, username: str, sql: str, args: tuple[Any, ...]) -> None:
        with self._transaction() as db:
            cursor = db.execute(sql, (*args, username))
            if cursor.rowcount != 1:
                raise StoreError(f"no consultant {username!r}")

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Raises StoreError for an unknown username."""
        self._update_consultant(
            username, "UPDATE consultants SET disabled = ? WHERE username = ?", (int(disabled),)
        )
        if disabled:
            self.revoke_tokens_of(username)

    def set_password(self, username: str, password_hash: str) -> None:
        """Set a new password, clear the lockout, revoke tokens. Raises StoreError."""
        self._update_consultant(
            username,
            "UPDATE consultants SET password_hash = ?, failed_logins = 0, locked_until = 0,"
            " lockouts = 0 WHERE username = ?",
            (password_hash,),
        )
        self.revoke_tokens_of(username)

    def set_totp(self, username: str, totp_secret: bytes | None) -> None:
        """Raises StoreError for an unknown username."""
        self._update_consultant(
            username,
            "UPDATE consultants SET totp_secret = ?, last_totp_step = -1 WHERE username = ?",
            (totp_secret,),
        )

    def record_login_failure(
        self, consultant_id: int, max_failures: int, base: float, cap: float, now: float
    ) -> float:
        """Count a failed login; return the lock's end (0 when not locked).

        Every `max_failures` failures in a row lock the account for `base`
        seconds, doubled for each lockout since the last good login, up to `cap`.
        """
        with self._transaction() as db:
            failed, lockouts = db.execute(
                "SELECT failed_logins, lockouts FROM consultants WHERE id = ?", (consultant_id,)
            ).fetchone()
            failed += 1
            locked_until = 0.0
            if failed >= max_failures:
                locked_until = now + min(cap, base * 2**lockouts)
                lockouts += 1
                failed = 0
            db.execute(
                "UPDATE consultants SET failed_logins = ?, lockouts = ?,"
                " locked_until = MAX(locked_until, ?) WHERE id = ?",
                (failed, lockouts, locked_until, consultant_id),
            )
        return locked_until

    def record_login_success(self, consultant_id: int, totp_step: int | None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE consultants SET failed_logins = 0, lockouts = 0, locked_until = 0,"
                " last_totp_step = COALESCE(?, last_totp_step) WHERE id = ?",
                (totp_step, consultant_id),
            )

    # -- tokens (stored as SHA-256: a stolen database yields no usable token)

    def add_token(self, token_hash: str, consultant_id: int, now: float, expires: float) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 86400,))
            db.execute(
                "INSERT INTO tokens (token_hash, consultant_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, consultant_id, now, expires),
            )

    def token_owner(self, token_hash: str, now: float) -> Consultant | None:
        """The consultant of a live token; None if unknown, expired, revoked or disabled."""
        row = self._db.execute(
            "SELECT consultant_id FROM tokens WHERE token_hash = ? AND revoked = 0"
            " AND expires_at > ?",
            (token_hash, now),
        ).fetchone()
        if row is None:
            return None
        consultant = self.consultant_by_id(row[0])
        if consultant is None or consultant.disabled:
            return None
        return consultant

    def revoke_token(self, token_hash: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE tokens SET revoked = 1 WHERE token_hash = ?", (token_hash,))

    def revoke_tokens_of(self, username: str) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked = 1 WHERE revoked = 0 AND consultant_id ="
                " (SELECT id FROM consultants WHERE username = ?)",
                (username,),
            )
            return cursor.rowcount

    # -- tickets

    _TICKET_SELECT = (
        "SELECT t.id, t.title, t.caller_name, t.company, t.phone, t.problem, t.status,"
        " c.display_name, t.consultant_id, t.created_at, t.closed_at, t.resolution"
        " FROM tickets t JOIN consultants c ON c.id = t.consultant_id"
    )

    def add_ticket(
        self,
        *,
        title: str,
        caller_name: str,
        company: str,
        phone: str,
        problem: str,
        consultant_id: int,
        now: float,
    ) -> Ticket:
        with self._transaction() as db:
            (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM tickets").fetchone()
            ticket_id = f"HD-{TICKET_FIRST_NUMBER + last}"
            db.execute(
                "INSERT INTO tickets (id, title, caller_name, company, phone, problem, status,"
                " consultant_id, created_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                (ticket_id, title, caller_name, company, phone, problem, consultant_id, now),
            )
        found = self.ticket(ticket_id)
        assert found is not None
        return found

    def ticket(self, ticket_id: str) -> Ticket | None:
        row = self._db.execute(self._TICKET_SELECT + " WHERE t.id = ?", (ticket_id,)).fetchone()
        return Ticket(*row) if row else None

    def tickets(self, status: str, consultant_id: int | None) -> list[Ticket]:
        sql, args = self._TICKET_SELECT + " WHERE 1=1", list[Any]()
        if status != "all":
            sql += " AND t.status = ?"
            args.append(status)
        if consultant_id is not None:
            sql += " AND t.consultant_id = ?"
            args.append(consultant_id)
        rows = self._db.execute(sql + " ORDER BY t.seq DESC", args).fetchall()
        return [Ticket(*row) for row in rows]

    def close_ticket(self, ticket_id: str, resolution: str, now: float) -> Ticket:
        """Raises StoreError when the ticket is unknown or already closed."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tickets SET status = 'closed', closed_at = ?, resolution = ?"
                " WHERE id = ? AND status = 'open'",
                (now, resolution, ticket_id),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"ticket {ticket_id} is not open")
        found = self.ticket(ticket_id)
        assert found is not None
        return found

    # -- audit

    def append_audit(
        self,
        kind: str,
        *,
        ticket_id: str = "",
        session_id: str = "",
        actor: str = "",
        ip: str = "",
        detail: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> AuditRow:
        """Append one row in its own durable transaction; returns it once committed."""
        at = time.time() if now is None else now
        detail = detail or {}
        with self._transaction() as db:
            last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
            fields = (seq, at, kind, ticket_id, session_id, actor, ip, detail)
            digest = audit_hash(prev_hash, fields)
            db.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    at,
                    kind,
                    ticket_id,
                    session_id,
                    actor,
                    ip,
                    json.dumps(detail, sort_keys=True, ensure_ascii=False),
                    prev_hash,
                    digest,
                ),
            )
        return AuditRow(seq, at, kind, ticket_id, session_id, actor, ip, detail, prev_hash, digest)

    def _audit_rows(self, ticket_id: str | None) -> Iterator[AuditRow]:
        sql = "SELECT * FROM audit"
        args: tuple[Any, ...] = ()
        if ticket_id is not None:
            sql += " WHERE ticket_id = ?"
            args = (ticket_id,)
        for row in self._db.execute(sql + " ORDER BY seq", args):
            try:
                detail = json.loads(row[7])
            except json.JSONDecodeError:
                detail = {"unreadable": row[7]}
            seq, at, kind, ticket_id, session_id, actor, ip = row[:7]
            yield AuditRow(seq, at, kind, ticket_id, session_id, actor, ip, detail, row[8], row[9])

    def audit(self, ticket_id: str | None = None) -> list[AuditRow]:
        return list(self._audit_rows(ticket_id))

    def verify_audit(self) -> tuple[int, list[AuditProblem]]:
        """Walk the whole chain; return the row count and every break found."""
        problems: list[AuditProblem] = []
        prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
        for row in self._audit_rows(None):
            count += 1
            if row.seq != expected_seq:
                problems.append(AuditProblem(row.seq, f"row {expected_seq} is missing"))
            if row.prev_hash != prev_hash:
                problems.append(AuditProblem(row.seq, "does not follow the previous row"))
            fields = (
                row.seq,
                row.at,
                row.kind,
                row.ticket_id,
                row.session_id,
                row.actor,
                row.ip,
                row.detail,
            )
            if audit_hash(row.prev_hash, fields) != row.hash:
                problems.append(AuditProblem(row.seq, "contents do not match its hash"))
            prev_hash, expected_seq = row.hash, row.seq + 1
        return count, problems


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements; trigger bodies keep their inner semicolons."""
    statements, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        stripped = line.strip()
        if stripped.endswith(";") and (
            not current.lstrip().upper().startswith("CREATE TRIGGER") or stripped.endswith("END;")
        ):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
