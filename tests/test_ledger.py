"""The SQLite ledger in one process: balances, two-phase charges, append-only history, export."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import subprocess
import sys

import pytest

from refvideo.engine import host
from refvideo.engine.credits.ledger import Ledger, Owner, process_start, shared_ledger
from refvideo.engine.errors import BudgetRefused, InputError, StorageError

INFO = {"model": "tiny-random", "seed": 7}


def assert_consistent(ledger: Ledger, account: str = "default") -> None:
    """The balance is the sum of the history, and every running total matches the sums up to it."""
    state = ledger.balance(account)
    assert ledger.sums(account) == (state.balance, state.held)
    assert ledger.verify() == []


def test_the_ledger_lives_in_the_system_dir_in_wal_mode():
    ledger = shared_ledger()
    assert ledger.path == host.ledger_path() == host.home() / "ledger.sqlite3"
    assert shared_ledger() is ledger
    with sqlite3.connect(ledger.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_account_starts_at_zero_and_top_ups_add_up():
    ledger = Ledger()
    assert ledger.balance("studio").balance == 0
    assert ledger.accounts() == []  # reading creates nothing
    ledger.topup("studio", 500)
    entry = ledger.topup("studio", "340", reason="invoice 12")
    assert (entry.kind, entry.amount, entry.balance_after, entry.reason) == ("topup", 340, 840, "invoice 12")
    assert ledger.balance("studio").balance == 840
    assert ledger.balance("default").balance == 0
    assert ledger.accounts() == ["studio"]
    assert_consistent(ledger, "studio")


def test_reserve_holds_commit_charges_with_metering():
    ledger = Ledger()
    ledger.topup("default", 2000)
    reservation = ledger.reserve("default", 840, reason="clip", plan={"resolution": "720p"}, prompt_id="p1",
                                 node_id="5")
    state = ledger.balance()
    assert (state.balance, state.held, state.available) == (2000, 840, 1160)
    charge = reservation.commit(generation_info=INFO, wall_seconds=12.5, gpu_seconds=11.0,
                                peak_vram_bytes=3 * 2**30)
    assert (charge.kind, charge.amount, charge.balance_after, charge.held_after) == ("charge", -840, 1160, 0)
    stored = ledger.history()[-1].to_dict()
    assert stored["generation_info"] == INFO and stored["plan"] == {"resolution": "720p"}
    assert (stored["wall_seconds"], stored["gpu_seconds"], stored["peak_vram_bytes"]) == (12.5, 11.0, 3 * 2**30)
    assert (stored["prompt_id"], stored["node_id"]) == ("p1", "5")
    assert_consistent(ledger)


def test_a_reservation_settles_once_and_is_never_charged_twice():
    ledger = Ledger()
    ledger.topup("default", 2000)
    first = ledger.reserve("default", 840, reason="clip")
    charge = first.commit(generation_info=INFO, wall_seconds=1.0)
    assert first.commit(generation_info=INFO, wall_seconds=1.0).id == charge.id  # repeat: the same charge
    assert first.release("failed later") is None  # release after commit: no-op
    second = ledger.reserve("default", 840, reason="clip")
    released = second.release("interrupted")
    assert (released.kind, released.held, released.amount) == ("release", -840, 0)
    assert second.release("again") is None
    assert second.commit(generation_info=INFO, wall_seconds=1.0) is None  # released: nothing charged
    assert ledger.balance().balance == 1160
    assert [e.kind for e in ledger.history()] == ["topup", "reserve", "charge", "reserve", "release"]
    assert_consistent(ledger)


def test_a_refusal_says_how_to_top_up():
    ledger = Ledger()
    ledger.topup("default", 1000)
    ledger.reserve("default", 840, reason="clip")
    with pytest.raises(BudgetRefused) as info:
        ledger.reserve("default", 840, reason="clip")
    text = str(info.value)
    assert "160 available" in text and "840 held" in text and "`refvideo credits topup 680`" in text
    assert info.value.exit_code == 2
    with pytest.raises(BudgetRefused) as info:
        ledger.reserve("my studio", 10, reason="clip")
    assert "topup 10 --account 'my studio'" in str(info.value)
    assert "other accounts: default" in str(info.value)
    assert ledger.accounts() == ["default"]  # a refused reservation wrote nothing
    assert_consistent(ledger)


def test_a_zero_credit_clip_is_recorded_with_its_metering():
    ledger = Ledger()
    reservation = ledger.reserve("default", 0, reason="previz clip")
    assert reservation.commit(generation_info=INFO, wall_seconds=0.5).amount == 0
    assert [e.kind for e in ledger.history()] == ["reserve", "charge"]


def test_a_cap_limits_one_budget_per_prompt():
    ledger = Ledger()
    ledger.topup("default", 10_000)
    args = {"reason": "clip", "budget_id": "b1", "cap": 1000}
    first = ledger.reserve("default", 840, prompt_id="p1", **args)
    with pytest.raises(BudgetRefused) as info:
        ledger.reserve("default", 840, prompt_id="p1", **args)
    assert info.value.input == "budget_cap" and "840 already spent" in str(info.value)
    ledger.reserve("default", 840, prompt_id="p2", **args).release("done")  # another run
    ledger.reserve("default", 840, prompt_id="p1", budget_id="b2", reason="clip", cap=1000)  # another budget
    first.release("failed")  # released credits do not count against the cap
    ledger.reserve("default", 840, prompt_id="p1", **args)
    assert_consistent(ledger)


@pytest.mark.parametrize("amount", [-1, math.nan, math.inf, 1.5, 10**12, "many"])
def test_bad_amounts_are_refused_by_every_write(amount):
    ledger = Ledger()
    ledger.topup("default", 100)
    with pytest.raises(InputError):
        ledger.topup("default", amount)
    with pytest.raises(InputError):
        ledger.reserve("default", amount, reason="clip")
    assert [e.amount for e in ledger.history()] == [100]


@pytest.mark.parametrize("kwargs", [
    {"wall_seconds": math.nan}, {"wall_seconds": -1.0}, {"wall_seconds": None}, {"gpu_seconds": math.inf},
    {"peak_vram_bytes": -5}, {"peak_vram_bytes": 1.5}, {"generation_info": "{not json"},
])
def test_bad_metering_is_refused_and_the_hold_stays(kwargs):
    ledger = Ledger()
    ledger.topup("default", 840)
    reservation = ledger.reserve("default", 840, reason="clip")
    with pytest.raises(InputError):
        reservation.commit(**{"generation_info": INFO, "wall_seconds": 1.0, **kwargs})
    assert ledger.balance().held == 840
    assert reservation.commit(generation_info=json.dumps(INFO), wall_seconds=1.0).amount == -840


def test_bad_account_names_are_refused():
    ledger = Ledger()
    for name in ("", "../x", "a/b", ".hidden", "x" * 65):
        with pytest.raises(InputError) as info:
            ledger.topup(name, 10)
        assert info.value.input == "account"


def test_history_is_append_only_and_running_totals_are_enforced():
    ledger = Ledger()
    ledger.topup("default", 840)
    ledger.reserve("default", 840, reason="clip").commit(generation_info=INFO, wall_seconds=1.0)
    with sqlite3.connect(ledger.path) as conn:
        for statement in ("UPDATE entries SET amount = 1", "DELETE FROM entries", "UPDATE reservations SET amount = 0",
                          "DELETE FROM accounts"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
        with pytest.raises(sqlite3.IntegrityError, match="running totals"):
            conn.execute("INSERT INTO entries(time, account, kind, amount, held, balance_after, held_after, reason) "
                         "VALUES (0, 'default', 'topup', 5, 0, 999, 0, 'forged')")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("INSERT INTO entries(time, account, kind, amount, held, balance_after, held_after, reason) "
                         "VALUES (0, 'default', 'topup', -5, 0, -5, 0, 'negative')")
    assert_consistent(ledger)


def test_verify_finds_a_history_changed_behind_the_ledgers_back():
    ledger = Ledger()
    ledger.topup("default", 840)
    ledger.topup("default", 100)
    assert ledger.verify() == []
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("UPDATE entries SET amount = 10000 WHERE id = 1")
    problems = ledger.verify()
    assert len(problems) == 2
    assert problems[0].startswith("entry 1 (default): running totals 840/0, history sums 10000/0")


def test_expired_reservations_are_released_on_the_next_start():
    ledger = Ledger()
    ledger.topup("default", 840)
    ledger.reserve("default", 840, reason="clip", ttl=-1)
    ledger.reserve("default", 0, reason="live clip")
    reopened = Ledger()
    assert reopened.balance().held == 0
    assert [e.reason for e in reopened.history() if e.kind == "release"] == ["expired unfinished"]
    assert len(reopened.open_reservations()) == 1  # the live, unexpired one stays


def test_owner_liveness_uses_pid_namespace_and_start_time():
    me = Owner.current()
    assert me.is_alive() and me.start
    boot, namespace, _tick = me.start.split(":")
    assert not Owner(me.pid, f"{boot}:{namespace}:1", me.host).is_alive()  # the pid now names another process
    assert Owner(me.pid, me.start, "another-machine").is_alive()  # cannot tell: kept until it expires
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start(child.pid) is None
    assert not Owner(child.pid, f"{boot}:{namespace}:1", me.host).is_alive()
    # the same host name in another PID namespace (a container): its pid 1 means nothing here
    assert Owner(1, f"{boot}:{int(namespace) + 1}:1", me.host).is_alive()
    assert Owner(child.pid, f"{boot}:{int(namespace) + 1}:1", me.host).is_alive()
    assert Owner(child.pid, "another-boot:1:1", me.host).is_alive()
    assert Owner(child.pid, "an old token without a namespace", me.host).is_alive()


def test_schema_from_a_newer_version_is_refused():
    ledger = Ledger()
    ledger.close()
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="schema version 99"):
        Ledger()


def test_export_writes_every_entry_and_defuses_formulas(tmp_path):
    ledger = Ledger()
    ledger.topup("default", 900, reason="=HYPERLINK(\"http://x\")")
    ledger.topup("studio", 50)
    ledger.reserve("default", 840, reason="clip").commit(generation_info=INFO, wall_seconds=2.0)
    target = tmp_path / "history.csv"
    assert ledger.export_csv(target) == 4
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [r["kind"] for r in rows] == ["topup", "topup", "reserve", "charge"]
    assert rows[0]["reason"].startswith("'=")
    assert json.loads(rows[3]["generation_info"]) == INFO and rows[3]["wall_seconds"] == "2.0"
    assert ledger.export_csv(target, "studio") == 1
    assert not list(tmp_path.glob(".*partial*"))


def test_a_hold_whose_owner_process_ended_is_released_on_the_next_open_and_a_live_owners_stays():
    ledger = Ledger()
    ledger.topup("default", 1000)
    mine = ledger.reserve("default", 600, reason="clip")
    crashed = ("import sys; from refvideo.engine.credits.ledger import Ledger; "
               "Ledger(sys.argv[1]).reserve('default', 300, reason='clip of a process that ends without committing')")
    subprocess.run([sys.executable, "-c", crashed, str(ledger.path)], check=True)
    assert ledger.balance().held == 900  # held until a ledger is opened
    reopened = Ledger()
    assert reopened.balance().held == 600
    released = [e for e in reopened.history() if e.kind == "release"]
    assert len(released) == 1 and released[0].held == -300 and "ended before committing" in released[0].reason
    assert [r["id"] for r in reopened.open_reservations()] == [mine.id]  # this process lives: its hold stays
    assert_consistent(reopened)
