"""A full disk in the store: StorageFull, nothing half-written, writable again after.

SQLite's `max_page_count` makes the database itself "full" (SQLITE_FULL, the code a
real ENOSPC produces) without root or a small filesystem; tests/security/test_faults.py
fills a real tmpfs.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from protocol.codec import decode_envelope, encode
from protocol.messages import RelayError, RelayErrorCode
from relay.store import SQLiteStore, StorageFull, StoreError, is_storage_full

BIG = {"blob": "x" * 64_000}  # more than the pages left


def capped(tmp_path: Path) -> tuple[SQLiteStore, sqlite3.Connection]:
    store = SQLiteStore(tmp_path)
    consultant = store.add_consultant("anna", "Anna Nowak", "hash", None)
    store.add_ticket(
        title="t",
        caller_name="c",
        company="",
        phone="",
        problem="p",
        consultant_id=consultant.id,
        now=1.0,
    )
    store.append_audit("ticket.opened", ticket_id="HD-1001")
    db = store._db  # the test's only way to cap this connection's database size
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    return store, db


def test_a_full_database_raises_storage_full_and_keeps_nothing_of_the_write(
    tmp_path: Path,
) -> None:
    store, db = capped(tmp_path)
    rows, problems = store.verify_audit()
    with pytest.raises(StorageFull):
        store.append_audit("nameplate.allocated", ticket_id="HD-1001", detail=BIG)
    with pytest.raises(StorageFull):
        store.add_ticket(
            title="t2",
            caller_name="c",
            company="",
            phone="",
            problem="p" * 100_000,
            consultant_id=1,
            now=2.0,
        )
    assert not db.in_transaction  # rolled back, so the next BEGIN works
    assert store.verify_audit() == (rows, problems) == (1, [])
    assert len(store.tickets("all", None)) == 1
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # space is back: the same connection writes again, the chain goes on
    db.execute("PRAGMA max_page_count = 1073741823")
    store.append_audit("nameplate.allocated", ticket_id="HD-1001", detail=BIG)
    assert store.verify_audit() == (2, [])
    store.close()


def test_storage_full_is_not_a_store_error() -> None:
    # callers map StoreError to "already exists"/"already closed": a full disk is neither
    assert not issubclass(StorageFull, StoreError)


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EFBIG, "File too large"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (ValueError("no"), False),
    ],
)
def test_which_errors_mean_a_full_disk(exc: BaseException, full: bool) -> None:
    assert is_storage_full(exc) is full


def test_an_io_error_on_a_disk_with_space_is_not_called_full(tmp_path: Path) -> None:
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode = 778  # SQLITE_IOERR_WRITE, as SQLite sets it
    assert not is_storage_full(exc, tmp_path / "relay.sqlite3")


def test_storage_full_is_a_wire_code_with_its_own_close_code() -> None:
    error = RelayError(code=RelayErrorCode.STORAGE_FULL, message="disk full", retry_after=0.0)
    assert decode_envelope(encode(error)) == error
    assert int(RelayErrorCode.STORAGE_FULL) == 14
