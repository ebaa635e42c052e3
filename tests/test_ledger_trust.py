"""The ledger checks its own file on open: altered history, dropped safeguards, another program's
SQLite file and a folder it cannot write to are each handled without trusting or changing the file."""

from __future__ import annotations

import os
import sqlite3

import pytest

from refvideo.engine.credits.ledger import Ledger, readable_ledger
from refvideo.engine.errors import StorageError, WriteFailed
from refvideo.headless.cli.main import main


def filled(path=None) -> Ledger:
    ledger = Ledger(path)
    ledger.topup("default", 1000)
    ledger.reserve("default", 300, reason="clip").commit(generation_info={"seed": 1}, wall_seconds=1.0)
    ledger.close()
    return ledger


def test_a_forged_balance_with_its_trigger_dropped_is_refused_on_open():
    ledger = filled()
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("DROP TRIGGER entries_running_totals")
        conn.execute("INSERT INTO entries(time, account, kind, amount, held, balance_after, held_after, reason) "
                     "VALUES (0, 'default', 'topup', 1, 0, 1000000, 0, 'forged')")
    with pytest.raises(StorageError, match="safeguard entries_running_totals was removed"):
        Ledger(ledger.path)


def test_history_that_no_longer_sums_to_the_balance_is_refused_on_open():
    ledger = filled()
    with sqlite3.connect(ledger.path) as conn:  # what a byte editor would do: every guard bypassed
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("UPDATE entries SET balance_after = 999999 WHERE id = (SELECT MAX(id) FROM entries)")
        conn.executescript("CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries "
                           "BEGIN SELECT RAISE(ABORT, 'x'); END;")
    with pytest.raises(StorageError, match="history sums to 700"):
        Ledger(ledger.path)
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("UPDATE entries SET balance_after = 700 WHERE id = 3")  # the totals are right again,
        conn.execute("UPDATE entries SET balance_after = 1234 WHERE id = 2")  # but the chain is broken
        conn.executescript("CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries "
                           "BEGIN SELECT RAISE(ABORT, 'x'); END;")
    with pytest.raises(StorageError, match="does not continue"):
        Ledger(ledger.path)


def test_another_programs_sqlite_file_is_refused_by_name_and_left_unchanged(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    before = path.read_bytes()
    with pytest.raises(StorageError, match=r"another program \(its tables: photos\)") as info:
        Ledger(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_corrupt_schema_metadata_is_a_named_refusal():
    ledger = filled()
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE meta SET value = 'banana' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="schema version 'banana' is not a number"):
        Ledger(ledger.path)


def _block_writes(path) -> None:
    """Make the ledger's folder unusable for writing: the WAL index and the writers' lock cannot be made."""
    for suffix in ("-shm", "-wal", ".lock"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
        side.mkdir()


def test_a_ledger_that_cannot_be_written_still_serves_read_only_commands(capsys):
    ledger = filled()
    _block_writes(ledger.path)
    with pytest.raises(WriteFailed):
        Ledger(ledger.path)
    reader = readable_ledger()
    assert reader.read_only and reader.balance().balance == 700
    assert [e.kind for e in reader.history()] == ["topup", "reserve", "charge"]
    with pytest.raises(WriteFailed, match="reading only"):
        reader.topup("default", 5)
    assert main(["credits", "balance", "--json"]) == 0
    assert '"balance": 700' in capsys.readouterr().out
    assert main(["credits", "topup", "5"]) == 1  # a write that cannot happen: refused, named


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_folder_still_serves_read_only_commands(capsys):
    ledger = filled()
    os.chmod(ledger.path.parent, 0o555)
    try:
        assert readable_ledger().balance().balance == 700
        assert main(["credits", "history"]) == 0
    finally:
        os.chmod(ledger.path.parent, 0o755)


def test_a_ledger_from_before_refunds_gains_their_table_on_open():
    ledger = filled()
    with sqlite3.connect(ledger.path) as conn:
        conn.executescript("DROP TRIGGER refunds_no_update; DROP TRIGGER refunds_no_delete; "
                           "DROP TRIGGER refunds_match_charge; DROP TABLE refunds;")
    reopened = Ledger(ledger.path)
    charge = reopened.history()[-1]
    assert reopened.refund(charge.id, "test").refund_of == charge.id


def test_a_commit_is_never_refused_for_the_size_of_its_record():
    ledger = Ledger()
    ledger.topup("default", 1000)
    info = {"seed": 7, "negative_prompt": "x" * 3_000_000, "warnings": ["w"] * 10}
    charge = ledger.reserve("default", 300, reason="clip").commit(generation_info=info, wall_seconds=1.0)
    stored = charge.to_dict()["generation_info"] if charge.generation_info else None
    assert charge.amount == -300 and ledger.balance().balance == 700
    assert stored["seed"] == 7 and len(charge.generation_info) <= 1_000_000
    assert stored["negative_prompt"].endswith("more characters]")
    huge = {f"k{i}": "y" * 19_000 for i in range(200)}  # too big even with every text shortened
    charge = ledger.reserve("default", 300, reason="clip").commit(generation_info=huge, wall_seconds=1.0)
    record = charge.to_dict()["generation_info"]
    assert record["truncated"] is True and len(record["sha256"]) == 64 and ledger.balance().balance == 400


def test_a_hold_whose_owner_this_process_cannot_see_is_kept_until_it_expires():
    import socket
    import time as clock

    from refvideo.engine.credits.ledger import Owner

    ledger = Ledger()
    ledger.topup("default", 1000)
    boot, namespace, _ = Owner.current().start.split(":")
    with sqlite3.connect(ledger.path) as conn:  # pid 1 of a container that shares this host's name
        for rid, start, expires in (("container", f"{boot}:{int(namespace) + 1}:5", clock.time() + 3600),
                                    ("mine-dead", f"{boot}:{namespace}:5", clock.time() + 3600),
                                    ("container-expired", f"{boot}:{int(namespace) + 1}:5", clock.time() - 1)):
            conn.execute("INSERT INTO reservations(id, account, amount, created, expires, owner_pid, owner_start, "
                         "owner_host, plan) VALUES (?, 'default', 100, 0, ?, 1, ?, ?, '{}')",
                         (rid, expires, start, socket.gethostname()))
            balance, held = conn.execute("SELECT balance_after, held_after FROM entries ORDER BY id DESC LIMIT 1"
                                         ).fetchone()
            conn.execute("INSERT INTO entries(time, account, kind, amount, held, balance_after, held_after, reason, "
                         "reservation_id) VALUES (0, 'default', 'reserve', 0, 100, ?, ?, 'clip', ?)",
                         (balance, held + 100, rid))
    ledger.close()
    reopened = Ledger(ledger.path)
    released = {e.reservation_id: e.reason for e in reopened.history() if e.kind == "release"}
    assert set(released) == {"mine-dead", "container-expired"}  # pid 1 here is alive, but not that owner
    assert reopened.balance().held == 100 and [r["id"] for r in reopened.open_reservations()] == ["container"]
