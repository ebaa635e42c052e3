"""The credit ledger: accounts, top-ups and two-phase charges in one SQLite file.

History is append-only (triggers refuse updates and deletes) and every entry carries the
account's running totals, checked against the previous entry by a trigger, so the balance
is always the sum of the history. Each change is one ``BEGIN IMMEDIATE`` transaction in WAL
mode with ``synchronous=FULL``: concurrent processes queue for the write lock, and a crash
loses nothing that was committed.

Charging has two phases. :meth:`Ledger.reserve` holds the price of a clip (refused when the
available credits, balance minus holds, do not cover it); :meth:`Reservation.commit` turns
the hold into a charge once the frames exist, with the clip's generation info and metering;
:meth:`Reservation.release` returns it on failure or interrupt. A reservation settles once:
later calls are no-ops. :meth:`Ledger.refund` returns a charge whose clip never reached a file,
once, as a ``refund`` entry linked to the charge. A reservation records its owner process (host,
boot, PID namespace, pid and start time) and an expiry; when a ledger is opened, holds of owners
known to have died, and expired holds, are released (an owner this process cannot see, e.g. in
another container, only by expiry).

Opening checks the file: another program's SQLite file is refused, the safeguard triggers must
be present, and each account's last entries and totals must agree with its history. Where the
ledger's folder cannot be written, :func:`readable_ledger` opens it for reading only.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import shlex
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

from .. import host
from ..errors import BudgetRefused, InputError, StorageError, WriteFailed
from ..storage import atomic_path, validate_name
from .pricing import check_amount, load_pricing

log = logging.getLogger("refvideo")

SCHEMA_VERSION = 1
DEFAULT_ACCOUNT = "default"
RESERVATION_TTL = 24 * 3600.0
BUSY_TIMEOUT = 10.0
MAX_TEXT = 1_000_000
MAX_STRING = 20_000  # the longest text kept whole inside an oversized generation info

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    created REAL NOT NULL,
    expires REAL NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start TEXT,
    owner_host TEXT NOT NULL,
    budget_id TEXT,
    prompt_id TEXT,
    node_id TEXT,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    account TEXT NOT NULL REFERENCES accounts(name),
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    held INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    held_after INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reservation_id TEXT REFERENCES reservations(id),
    prompt_id TEXT,
    node_id TEXT,
    generation_info TEXT,
    wall_seconds REAL,
    gpu_seconds REAL,
    peak_vram_bytes INTEGER,
    CHECK (held_after >= 0 AND balance_after >= held_after),
    CHECK ((kind = 'topup' AND amount > 0 AND held = 0 AND reservation_id IS NULL)
        OR (kind = 'reserve' AND amount = 0 AND held >= 0 AND reservation_id IS NOT NULL)
        OR (kind = 'charge' AND amount <= 0 AND held = amount AND reservation_id IS NOT NULL)
        OR (kind = 'release' AND amount = 0 AND held <= 0 AND reservation_id IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries(account, id);
CREATE UNIQUE INDEX IF NOT EXISTS entries_one_reserve ON entries(reservation_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX IF NOT EXISTS entries_one_settlement ON entries(reservation_id)
    WHERE kind IN ('charge', 'release');
CREATE INDEX IF NOT EXISTS reservations_by_budget ON reservations(budget_id, prompt_id);
CREATE INDEX IF NOT EXISTS reservations_by_account ON reservations(account);
CREATE TRIGGER IF NOT EXISTS entries_running_totals BEFORE INSERT ON entries
WHEN NEW.balance_after IS NOT COALESCE((SELECT balance_after FROM entries WHERE account = NEW.account
                                        ORDER BY id DESC LIMIT 1), 0) + NEW.amount
  OR NEW.held_after IS NOT COALESCE((SELECT held_after FROM entries WHERE account = NEW.account
                                     ORDER BY id DESC LIMIT 1), 0) + NEW.held
BEGIN SELECT RAISE(ABORT, 'running totals must continue the account history'); END;
CREATE TRIGGER IF NOT EXISTS entries_match_reservation BEFORE INSERT ON entries
WHEN NEW.reservation_id IS NOT NULL
 AND abs(NEW.held) IS NOT (SELECT amount FROM reservations WHERE id = NEW.reservation_id)
BEGIN SELECT RAISE(ABORT, 'an entry must move exactly its reservation amount'); END;
"""
# A refund is a top-up entry linked here to the charge it returns; one per charge.
_REFUNDS = """
CREATE TABLE IF NOT EXISTS refunds (
    charge_id INTEGER PRIMARY KEY REFERENCES entries(id),
    entry_id INTEGER NOT NULL UNIQUE REFERENCES entries(id)
);
CREATE TRIGGER IF NOT EXISTS refunds_match_charge BEFORE INSERT ON refunds
WHEN (SELECT kind FROM entries WHERE id = NEW.charge_id) IS NOT 'charge'
  OR (SELECT kind FROM entries WHERE id = NEW.entry_id) IS NOT 'topup'
  OR (SELECT amount FROM entries WHERE id = NEW.entry_id) IS NOT -(SELECT amount FROM entries WHERE id = NEW.charge_id)
  OR (SELECT account FROM entries WHERE id = NEW.entry_id) IS NOT (SELECT account FROM entries WHERE id = NEW.charge_id)
BEGIN SELECT RAISE(ABORT, 'a refund must return exactly its charge, once'); END;
"""
_TABLES = ("entries", "reservations", "accounts", "refunds")
_APPEND_ONLY = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the credit ledger is append-only'); END;\n"
    for table in _TABLES for verb in ("UPDATE", "DELETE")
)
# The safeguards every ledger of this schema has; one that is missing means the file was altered.
_GUARDS = ("entries_running_totals", "entries_match_reservation",
           *(f"{table}_no_{verb}" for table in _TABLES[:3] for verb in ("update", "delete")))
_OPEN_CHECK_ENTRIES = 200
_ENTRY_COLUMNS = ("id", "time", "account", "kind", "amount", "held", "balance_after", "held_after", "reason",
                  "reservation_id", "prompt_id", "node_id", "generation_info", "wall_seconds", "gpu_seconds",
                  "peak_vram_bytes")
_ENTRY_FIELDS = ", ".join("CASE WHEN f.entry_id IS NULL THEN e.kind ELSE 'refund' END AS kind" if c == "kind"
                          else "e." + c for c in _ENTRY_COLUMNS)
_SELECT_ENTRIES = (f"SELECT {_ENTRY_FIELDS}, r.plan AS plan, f.charge_id AS refund_of FROM entries e "
                   "LEFT JOIN reservations r ON r.id = e.reservation_id LEFT JOIN refunds f ON f.entry_id = e.id")
# a ledger from before refunds existed, opened where it cannot be changed: it has no refunds
_SELECT_ENTRIES_NO_REFUNDS = (f"SELECT {', '.join('e.' + c for c in _ENTRY_COLUMNS)}, r.plan AS plan, "
                              "NULL AS refund_of FROM entries e LEFT JOIN reservations r ON r.id = e.reservation_id")
_SETTLEMENT = "SELECT kind, id FROM entries WHERE reservation_id = ? AND kind IN ('charge', 'release')"


# --------------------------------------------------------------------------- owners


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    """This boot's id on Linux, "" where it cannot be read: with a start tick it names one process."""
    try:
        return (_read_text("/proc/sys/kernel/random/boot_id") or "").strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str:
    """This process's PID namespace ("" where it cannot be read): pids name processes only within one."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def _linux_start(pid: int) -> str | None:
    """``boot:pid-namespace:start-tick`` of process ``pid`` of this namespace (None: not running)."""
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # exited, waiting to be reaped
        return None
    return f"{_boot_id()}:{_pid_namespace()}:{fields[19]}"


def _linux_sees(start: str | None) -> bool:
    """Whether an owner whose token is ``start`` lives in this boot and PID namespace, so its pid means
    the same process here. Tokens without a namespace (older ledgers) cannot be placed: not seen."""
    parts = (start or "").split(":")
    return len(parts) == 3 and parts[0] == _boot_id() and bool(parts[1]) and parts[1] == _pid_namespace()


def _windows_start(pid: int) -> str | None:
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    filetime = ctypes.POINTER(wintypes.FILETIME)
    for name, args in (("GetExitCodeProcess", (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))),
                       ("GetProcessTimes", (wintypes.HANDLE, *[filetime] * 4)), ("CloseHandle", (wintypes.HANDLE,))):
        getattr(kernel32, name).argtypes, getattr(kernel32, name).restype = args, wintypes.BOOL
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return None if ctypes.get_last_error() == 87 else ""  # type: ignore[attr-defined,unused-ignore]  # 87: no such process
    try:
        code = wintypes.DWORD()
        times = [wintypes.FILETIME() for _ in range(4)]
        if kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) and code.value != 259:  # 259: STILL_ACTIVE
            return None
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return ""
        return str((times[0].dwHighDateTime << 32) | times[0].dwLowDateTime)
    finally:
        kernel32.CloseHandle(handle)


def _posix_start(pid: int) -> str | None:
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else repr(process.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return ""


def process_start(pid: int) -> str | None:
    """A token for when process ``pid`` started: None when it is not running, "" when unknowable."""
    if sys.platform.startswith("linux") and _boot_id():
        return _linux_start(pid)
    if sys.platform == "win32":
        return _windows_start(pid)
    return _posix_start(pid)


@dataclass(frozen=True)
class Owner:
    """The process that holds a reservation."""

    pid: int
    start: str | None
    host: str

    @classmethod
    def current(cls) -> Owner:
        return _current_owner(os.getpid())

    def is_alive(self) -> bool:
        """False only when this process is known to have ended (or its pid now names another one).

        An owner this process cannot see (another machine, boot or PID namespace, e.g. a container
        that shares the host name) counts as alive: only its hold's expiry releases it.
        """
        if self.host != socket.gethostname():
            return True  # another machine's process: only the expiry can tell
        if sys.platform.startswith("linux") and _boot_id() and not _linux_sees(self.start):
            return True
        now = process_start(self.pid)
        if now is None:
            return False
        return not (now and self.start) or now == self.start


@functools.lru_cache(maxsize=4)
def _current_owner(pid: int) -> Owner:
    return Owner(pid, process_start(pid) or None, socket.gethostname())


# --------------------------------------------------------------------------- records


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Entry:
    """One line of history. ``amount`` changes the balance, ``held`` the credits held by reservations."""

    id: int
    time: float
    account: str
    kind: str
    amount: int
    held: int
    balance_after: int
    held_after: int
    reason: str
    reservation_id: str | None = None
    prompt_id: str | None = None
    node_id: str | None = None
    generation_info: str | None = None
    wall_seconds: float | None = None
    gpu_seconds: float | None = None
    peak_vram_bytes: int | None = None
    plan: str | None = None
    refund_of: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = _iso(self.time)
        for key in ("generation_info", "plan"):
            data[key] = json.loads(data[key]) if data[key] else None
        return data


@dataclass(frozen=True)
class Balance:
    """An account's totals: ``balance`` (sum of history), ``held`` by open reservations, ``available``."""

    account: str
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


class InsufficientCredits(BudgetRefused):
    """The account's available credits do not cover the amount."""


def topup_hint(account: str, credits: int) -> str:
    """How to add ``credits`` to ``account``, as a command to copy."""
    command = f"refvideo credits topup {max(int(credits), 1)}"
    if account != DEFAULT_ACCOUNT:
        command += f" --account {shlex.quote(account)}"
    where = ""
    if host.in_comfyui() or host.settings()["comfyui_dir"]:
        where = " with --comfyui-dir set to your ComfyUI folder, so that it reaches the ledger ComfyUI uses"
    return f"Top up with `{command}`{where}, then run again."


def _bounded(text: str) -> str:
    """``text`` (JSON) when it fits the ledger, else a bounded record of it: long strings shortened, or at
    worst its head, length and digest. A commit is never refused for the size of what it records."""
    if len(text) <= MAX_TEXT:
        return text

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_STRING:
            return value[:MAX_STRING] + f"... [{len(value) - MAX_STRING} more characters]"
        if isinstance(value, dict):
            return {str(k)[:MAX_STRING]: shorten(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shorten(v) for v in value]
        return value

    shorter = json.dumps(shorten(json.loads(text)), sort_keys=True, default=str)
    if len(shorter) <= MAX_TEXT:
        return shorter
    return json.dumps({"truncated": True, "characters": len(text),
                       "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                       "head": text[:MAX_TEXT // 8]})


def _json_text(value: Any, *, input: str, bound: bool = False) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            text = json.dumps(json.loads(value), sort_keys=True)
        except (ValueError, RecursionError):
            raise InputError("is not valid JSON.", input=input, fix="Pass a dict or a JSON object string.") from None
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InputError(f"cannot be stored as JSON ({exc}).", input=input, fix="Pass plain data.") from None
    if bound:
        return _bounded(text)
    if len(text) > MAX_TEXT:
        raise InputError(f"is {len(text)} characters long; the ledger keeps at most {MAX_TEXT}.", input=input,
                         fix="Store a shorter generation info.")
    return text


def _measure(value: Any, *, input: str, integer: bool = False) -> float | int | None:
    if value is None:
        return None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{value!r} is not {kind} >= 0.", input=input, fix=f"Pass {kind} >= 0 or None.")
    if integer and value != int(value):
        raise InputError(f"{value!r} is not {kind}.", input=input, fix=f"Pass {kind} >= 0 or None.")
    return int(value) if integer else float(value)


def _reason(text: Any) -> str:
    """A reason to keep with an entry: 1-500 characters that can be stored as UTF-8."""
    if not isinstance(text, str) or not text.strip() or len(text) > 500:
        raise InputError(f"{text!r} is not a reason.", input="reason", fix="Give a short text (1-500 characters).")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{text!r} holds bytes that are not text (not UTF-8).", input="reason",
                         fix="Retype the reason in your terminal's UTF-8 text.") from None
    return text.strip()


# --------------------------------------------------------------------------- the ledger


class Ledger:
    """One ledger file. Safe to share between threads; each process opens its own connection."""

    def __init__(self, path: str | os.PathLike | None = None, *, timeout: float = BUSY_TIMEOUT,
                 release_orphans: bool = True, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else host.ledger_path()
        self.timeout = float(timeout)
        self.read_only = read_only
        self._select = _SELECT_ENTRIES
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._queue_fd: int | None = None
        self._queue_pid = -1
        self._connection()
        if release_orphans and not read_only:
            self.release_orphans()

    # ------------------------------------------------------------------ connection and errors

    def _damaged(self, detail: str) -> StorageError:
        return StorageError(
            f"the credit ledger {self.path} is damaged ({detail}). RefVideo has not changed it.",
            fix="Restore the file from a backup (or move it aside to start an empty ledger; keep the damaged copy "
                "for recovery with the sqlite3 tool's .recover). No entry will be written until then.")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn SQLite errors into clear StorageErrors; a failed change is rolled back whole."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"the credit ledger {self.path} refused an entry while {action}: {exc}. "
                               "Nothing was changed.", fix="Report this as a bug, with `refvideo credits history`.") \
                from None
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise WriteFailed(
                    f"the credit ledger {self.path} is locked by another program (waited {self.timeout:g} s) while "
                    f"{action}. Nothing was changed.",
                    fix="Close the program that holds it (a database browser, a stuck refvideo or ComfyUI process) "
                        "and try again.") from None
            if "malformed" in text or "not a database" in text or "corrupt" in text:
                raise self._damaged(str(exc)) from None
            raise WriteFailed(f"the credit ledger {self.path} cannot be used while {action} ({exc}).",
                              fix="Check that its folder exists, is writable and is on a local disk "
                                   "(SQLite's WAL mode does not work on network shares).") from None
        except sqlite3.DatabaseError as exc:
            raise self._damaged(str(exc)) from None
        except OSError as exc:  # the folder or the lock file beside the ledger
            raise WriteFailed(f"the credit ledger {self.path} cannot be used while {action} ({exc}).",
                              fix="Check that its folder exists and is writable.") from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # a connection inherited through fork() must not be used
        with self._errors("opening it"):
            if self.read_only:
                conn = self._open_read_only()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                       check_same_thread=False)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """The file opened for reading only; in a folder nobody may write to, as an immutable snapshot
        (SQLite cannot create the WAL index there)."""
        if not self.path.is_file():
            raise StorageError(f"there is no credit ledger at {self.path} yet.",
                               fix="Add credits with `refvideo credits topup N` where the ledger's folder is writable.")
        uri = Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=self.timeout, isolation_level=None,
                               check_same_thread=False)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        check = conn.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in check] != [("ok",)]:
            raise self._damaged(str(check[0][0]).splitlines()[0][:200])
        self._refuse_foreign(conn)
        if not self.read_only:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"the credit ledger {self.path} cannot use SQLite's WAL mode (got {mode}).",
                                   fix="Keep the ledger on a local disk.")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = self._schema_version(conn)
        if version is None and self.read_only:
            self._select = _SELECT_ENTRIES_NO_REFUNDS
            return  # nothing written yet: an empty ledger
        if version is None:  # a new file: every statement is idempotent, so racing creators agree
            self._script(conn, f"{_SCHEMA}{_REFUNDS}{_APPEND_ONLY}INSERT OR IGNORE INTO meta(key, value) "
                               f"VALUES ('schema_version', '{SCHEMA_VERSION}');\n")
            version = self._schema_version(conn)
        if version != SCHEMA_VERSION:
            raise StorageError(f"the credit ledger {self.path} has schema version {version}; this RefVideo "
                               f"reads version {SCHEMA_VERSION}.", fix="Upgrade RefVideo.")
        if not self._has(conn, "table", "refunds") and not self.read_only:
            self._script(conn, f"{_REFUNDS}{_APPEND_ONLY}")  # a ledger from before refunds: add their table
        self._select = _SELECT_ENTRIES if self._has(conn, "table", "refunds") else _SELECT_ENTRIES_NO_REFUNDS
        self._check_on_open(conn)

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        if not self._has(conn, "table", "meta"):
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return None
        text = str(row[0]).strip()
        if not (text.isascii() and text.isdigit() and len(text) < 10):
            raise self._damaged(f"its schema version {text[:40]!r} is not a number")
        return int(text)

    @staticmethod
    def _script(conn: sqlite3.Connection, script: str) -> None:
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _has(conn: sqlite3.Connection, kind: str, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?", (kind, name)).fetchone() \
            is not None

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """Another program's SQLite file at the ledger's path is never adopted (nor written to)."""
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%'")}
        if names and not {"meta", "entries", "reservations", "accounts"} <= names:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise StorageError(
                f"{self.path} is an SQLite file of another program (its tables: {shown}), not a RefVideo credit "
                "ledger. RefVideo has not changed it.",
                fix="Move that file elsewhere (or point RefVideo at another ledger folder), then run again.")

    def _check_on_open(self, conn: sqlite3.Connection) -> None:
        """A cheap audit on every open: the safeguards are in place, each account's last entries continue
        each other, and its last totals equal the sums of its history. Raises StorageError otherwise."""
        missing = [name for name in _GUARDS if not self._has(conn, "trigger", name)]
        if missing:
            raise self._damaged(f"its safeguard {missing[0]} was removed, so its history cannot be trusted")
        rows = conn.execute("SELECT account, SUM(amount), SUM(held) FROM entries GROUP BY account").fetchall()
        for account, balance, held in rows:  # one pass over the history, in the account index's order
            last = conn.execute("SELECT id, amount, held, balance_after, held_after FROM entries WHERE account = ? "
                                "ORDER BY id DESC LIMIT ?", (account, _OPEN_CHECK_ENTRIES)).fetchall()
            if last and (last[0]["balance_after"], last[0]["held_after"]) != (balance, held):
                raise self._damaged(f"account '{account}' shows {last[0]['balance_after']} credits after entry "
                                    f"{last[0]['id']}, but its history sums to {balance}")
            for newer, older in itertools.pairwise(last):
                if (newer["balance_after"] - newer["amount"], newer["held_after"] - newer["held"]) != \
                        (older["balance_after"], older["held_after"]):
                    raise self._damaged(f"entry {newer['id']} of account '{account}' does not continue entry "
                                        f"{older['id']}")

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything in the block is committed together, or nothing is."""
        if self.read_only:
            raise WriteFailed(f"the credit ledger {self.path} is open for reading only (its folder cannot be "
                              f"written to), so it cannot be changed while {action}.",
                              fix="Make the ledger's folder writable, then run again.")
        with self._lock, self._errors(action), self._writers_queue():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _writers_queue(self) -> Iterator[None]:
        """RefVideo's writers wait in the kernel on ``<ledger>.lock`` (POSIX), so each gets its turn.

        SQLite's own busy handler sleeps up to 100 ms between tries, which lets one process
        keep the lock while others starve; it still guards against other programs' locks
        (``timeout``). The queue lock is held only around one short transaction, and the
        kernel drops it when its process dies.
        """
        if fcntl is None:
            yield
            return
        if self._queue_fd is None or self._queue_pid != os.getpid():
            self._queue_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._queue_pid = os.getpid()
        fcntl.flock(self._queue_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._queue_fd, fcntl.LOCK_UN)

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(action):
            yield self._connection()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            if self._queue_fd is not None and self._queue_pid == os.getpid():
                os.close(self._queue_fd)
            self._conn, self._queue_fd = None, None

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _last_totals(conn: sqlite3.Connection, account: str) -> tuple[int, int] | None:
        """Balance and held credits after the account's last entry; None before its first."""
        row = conn.execute("SELECT balance_after, held_after FROM entries WHERE account = ? ORDER BY id DESC LIMIT 1",
                           (account,)).fetchone()
        return (row[0], row[1]) if row else None

    @staticmethod
    def _totals(conn: sqlite3.Connection, account: str) -> tuple[int, int]:
        return Ledger._last_totals(conn, account) or (0, 0)

    def balance(self, account: str = DEFAULT_ACCOUNT) -> Balance:
        """The account's totals (a new account has 0)."""
        account = validate_name(account, kind="account", input_name="account")
        with self._reading("reading a balance") as conn:
            return Balance(account, *self._totals(conn, account))

    def accounts(self) -> list[str]:
        with self._reading("listing accounts") as conn:
            return [r[0] for r in conn.execute("SELECT name FROM accounts ORDER BY name")]

    def history(self, account: str | None = None, *, limit: int | None = None) -> list[Entry]:
        """Entries oldest first: all of them, or the last ``limit``, of one account or all."""
        return list(self.iter_history(account, limit=limit))

    def iter_history(self, account: str | None = None, *, limit: int | None = None) -> Iterator[Entry]:
        where = "WHERE e.account = ?" if account is not None else ""
        params: list[Any] = [account] if account is not None else []
        if account is not None:
            validate_name(account, kind="account", input_name="account")
        sql = f"{self._select} {where} ORDER BY e.id DESC" + (" LIMIT ?" if limit is not None else "")
        if limit is not None:
            params.append(int(limit))
        with self._reading("reading the history") as conn:
            rows = conn.execute(f"SELECT * FROM ({sql}) ORDER BY id", params).fetchall()
        for row in rows:
            yield Entry(**dict(row))

    def sums(self, account: str) -> tuple[int, int]:
        """SUM(amount) and SUM(held) over the account's whole history (what the totals must equal)."""
        with self._reading("summing the history") as conn:
            row = conn.execute("SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(held), 0) FROM entries "
                               "WHERE account = ?", (account,)).fetchone()
        return row[0], row[1]

    def verify(self) -> list[str]:
        """Audit the whole history: each entry's running totals must equal the sums of the entries up to
        it, and no account may hold more than it has. Returns the problems found (empty: consistent)."""
        with self._reading("checking the history") as conn:
            rows = conn.execute(
                "SELECT id, account, balance_after, held_after, b, h FROM (SELECT id, account, balance_after, "
                "held_after, SUM(amount) OVER w AS b, SUM(held) OVER w AS h FROM entries "
                "WINDOW w AS (PARTITION BY account ORDER BY id)) "
                "WHERE balance_after != b OR held_after != h OR held_after < 0 OR balance_after < held_after "
                "LIMIT 20").fetchall()
        return [f"entry {r['id']} ({r['account']}): running totals {r['balance_after']}/{r['held_after']}, "
                f"history sums {r['b']}/{r['h']}" for r in rows]

    def open_reservations(self, account: str | None = None) -> list[dict[str, Any]]:
        """Reservations that are neither charged nor released."""
        where = "AND r.account = ?" if account is not None else ""
        with self._reading("listing reservations") as conn:
            rows = conn.execute(
                f"SELECT r.* FROM reservations r WHERE NOT EXISTS (SELECT 1 FROM entries s WHERE "
                f"s.reservation_id = r.id AND s.kind IN ('charge', 'release')) {where} ORDER BY r.created",
                (account,) if account is not None else ()).fetchall()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ writing

    @staticmethod
    def _append(conn: sqlite3.Connection, account: str, kind: str, amount: int, held: int, reason: str,
                totals: tuple[int, int] | None = None, **fields: Any) -> Entry:
        balance, held_total = totals or Ledger._totals(conn, account)
        values = dict(time=time.time(), account=account, kind=kind, amount=amount, held=held,
                      balance_after=balance + amount, held_after=held_total + held, reason=reason, **fields)
        cursor = conn.execute(f"INSERT INTO entries({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                              tuple(values.values()))
        assert cursor.lastrowid is not None  # an INSERT sets it
        return Entry(id=cursor.lastrowid, **values)

    @staticmethod
    def _open_account(conn: sqlite3.Connection, account: str) -> tuple[int, int]:
        """The account's totals, creating the account (at 0) when it has no history yet."""
        totals = Ledger._last_totals(conn, account)
        if totals is not None:
            return totals
        conn.execute("INSERT OR IGNORE INTO accounts(name, created) VALUES (?, ?)", (account, time.time()))
        return 0, 0

    def topup(self, account: str, amount: Any, *, reason: str = "top-up") -> Entry:
        """Add credits; refuses negative, zero, fractional, NaN, infinite and absurd amounts."""
        account = validate_name(account, kind="account", input_name="account")
        amount = check_amount(amount, input="amount", limit=load_pricing().max_amount)
        reason = _reason(reason)
        with self._transaction("adding credits") as conn:
            return self._append(conn, account, "topup", amount, 0, reason, self._open_account(conn, account))

    def reserve(self, account: str, amount: Any, *, reason: str, plan: dict[str, Any] | None = None,
                prompt_id: str | None = None, node_id: str | None = None, budget_id: str | None = None,
                cap: int | None = None, ttl: float = RESERVATION_TTL) -> Reservation:
        """Hold ``amount`` credits for one clip, or raise BudgetRefused (InsufficientCredits) naming the fix.

        With ``cap``, the reservations of ``budget_id`` in the same prompt (not released) plus this one
        must not exceed ``cap``.
        """
        account = validate_name(account, kind="account", input_name="account")
        amount = check_amount(amount, input="amount", limit=load_pricing().max_amount, allow_zero=True)
        args: dict[str, Any] = {"reason": _reason(reason), "plan": _json_text(plan or {}, input="plan"),
                                "prompt_id": prompt_id, "node_id": node_id, "budget_id": budget_id, "cap": cap,
                                "ttl": float(ttl)}
        try:
            return self._reserve_once(account, amount, **args)
        except InsufficientCredits:
            if not self.release_orphans():
                raise
        return self._reserve_once(account, amount, **args)

    def _reserve_once(self, account: str, amount: int, *, reason: str, plan: str, prompt_id: str | None,
                      node_id: str | None, budget_id: str | None, cap: int | None, ttl: float) -> Reservation:
        owner = Owner.current()
        rid = uuid.uuid4().hex
        with self._transaction("reserving credits") as conn:
            balance, held = self._open_account(conn, account)
            if amount > balance - held:
                raise self.shortfall(account, amount, "this clip")
            if cap is not None:
                # kind IN (...) repeats the partial index's condition, so the lookup uses entries_one_settlement
                spent = conn.execute(
                    "SELECT COALESCE(SUM(r.amount), 0) FROM reservations r WHERE r.budget_id IS ? AND r.prompt_id IS ? "
                    "AND NOT EXISTS (SELECT 1 FROM entries s WHERE s.reservation_id = r.id "
                    "AND s.kind IN ('charge', 'release') AND s.kind = 'release')",
                    (budget_id, prompt_id)).fetchone()[0]
                if spent + amount > cap:
                    raise BudgetRefused(
                        f"this clip costs {amount} credits; with the {spent} already spent in this run it would "
                        f"exceed the budget cap of {cap}.", input="budget_cap",
                        fix="Raise budget_cap on the CreditMeter node (0 means no cap), or plan fewer or cheaper "
                            "clips.")
            now = time.time()
            conn.execute(
                "INSERT INTO reservations(id, account, amount, created, expires, owner_pid, owner_start, owner_host, "
                "budget_id, prompt_id, node_id, plan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, account, amount, now, now + ttl, owner.pid, owner.start, owner.host, budget_id, prompt_id,
                 node_id, plan))
            entry = self._append(conn, account, "reserve", 0, amount, reason, (balance, held), reservation_id=rid,
                                 prompt_id=prompt_id, node_id=node_id)
        return Reservation(self, rid, account, amount, entry)

    def shortfall(self, account: str, amount: int, what: str) -> InsufficientCredits:
        """The refusal for ``what`` costing ``amount`` when the account cannot cover it, with the fix."""
        with self._reading("reading a balance") as conn:
            balance, held = self._totals(conn, account)
            others = [r[0] for r in conn.execute("SELECT name FROM accounts WHERE name != ? ORDER BY name LIMIT 5",
                                                 (account,))]
        available = balance - held
        detail = f"balance {balance}, {held} held by running generations" if held else f"balance {balance}"
        known = f" (other accounts: {', '.join(others)})" if balance == 0 and others else ""
        return InsufficientCredits(
            f"not enough credits: {what} costs {amount}, and account '{account}'{known} has {available} "
            f"available ({detail}).", fix=topup_hint(account, amount - available))

    def commit(self, reservation_id: str, *, generation_info: Any, wall_seconds: float,
               gpu_seconds: float | None = None, peak_vram_bytes: int | None = None) -> Entry | None:
        """Charge a reservation with its clip's generation info and metering.

        Committing again returns the first charge; committing a released reservation charges nothing
        (logged) and returns None.
        """
        fields: dict[str, Any] = {"generation_info": _json_text(generation_info, input="generation_info", bound=True),
                  "wall_seconds": _measure(wall_seconds, input="wall_seconds"),
                  "gpu_seconds": _measure(gpu_seconds, input="gpu_seconds"),
                  "peak_vram_bytes": _measure(peak_vram_bytes, input="peak_vram_bytes", integer=True)}
        if fields["wall_seconds"] is None:
            raise InputError("is required.", input="wall_seconds", fix="Pass the clip's wall time in seconds.")
        with self._transaction("charging a reservation") as conn:
            row = self._reservation(conn, reservation_id)
            settled = conn.execute(_SETTLEMENT, (reservation_id,)).fetchone()
            if settled is not None:
                if settled["kind"] == "release":
                    log.warning("RefVideo: reservation %s was released before its commit; nothing was charged.",
                                reservation_id)
                    return None
                return self._entry(conn, settled["id"])
            return self._append(conn, row["account"], "charge", -row["amount"], -row["amount"], "clip generated",
                                reservation_id=reservation_id, prompt_id=row["prompt_id"], node_id=row["node_id"],
                                **fields)

    def release(self, reservation_id: str, reason: str) -> Entry | None:
        """Return a reservation's credits; None when it was already charged or released."""
        reason = _reason(reason)
        with self._transaction("releasing a reservation") as conn:
            return self._release_in(conn, self._reservation(conn, reservation_id), reason)

    def _release_in(self, conn: sqlite3.Connection, row: sqlite3.Row, reason: str) -> Entry | None:
        if conn.execute(_SETTLEMENT, (row["id"],)).fetchone() is not None:
            return None
        return self._append(conn, row["account"], "release", 0, -row["amount"], reason, reservation_id=row["id"],
                            prompt_id=row["prompt_id"], node_id=row["node_id"])

    def refund(self, charge_id: int, reason: str) -> Entry | None:
        """Return a charge's credits to its account, once (the rule: a clip that never reached a file).

        The refund is an entry of kind ``refund`` whose ``refund_of`` is the charge's entry id.
        Refunding a charge again returns the first refund; a charge of 0 credits returns None.
        """
        reason = _reason(reason)
        if isinstance(charge_id, bool) or not isinstance(charge_id, int):
            raise InputError(f"{charge_id!r} is not a charge id.", input="charge_id",
                             fix="Pass the id of the charge entry (generation_info's credits.charge_id).")
        with self._transaction("refunding a charge") as conn:
            charge = conn.execute("SELECT * FROM entries WHERE id = ? AND kind = 'charge'", (charge_id,)).fetchone()
            if charge is None:
                raise InputError(f"there is no charge {charge_id} in the ledger {self.path}.", input="charge_id",
                                 fix="Pass the id of a charge entry (generation_info's credits.charge_id).")
            done = conn.execute("SELECT entry_id FROM refunds WHERE charge_id = ?", (charge_id,)).fetchone()
            if done is not None:
                return self._entry(conn, done[0])
            if charge["amount"] == 0:
                return None
            entry = self._append(conn, charge["account"], "topup", -charge["amount"], 0,
                                 f"refund of charge {charge_id}: {reason}"[:500], prompt_id=charge["prompt_id"],
                                 node_id=charge["node_id"])
            conn.execute("INSERT INTO refunds(charge_id, entry_id) VALUES (?, ?)", (charge_id, entry.id))
            return self._entry(conn, entry.id)

    def charge_entry(self, charge_id: int) -> Entry | None:
        """The charge entry ``charge_id`` (None when there is no such charge)."""
        with self._reading("reading a charge") as conn:
            row = conn.execute("SELECT id FROM entries WHERE id = ? AND kind = 'charge'", (charge_id,)).fetchone()
            return None if row is None else self._entry(conn, row[0])

    @staticmethod
    def _reservation(conn: sqlite3.Connection, reservation_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM reservations WHERE id = ?", (reservation_id,)).fetchone()
        if row is None:
            raise InputError(f"there is no reservation '{reservation_id}' in the ledger.", input="reservation",
                             fix="Use the reservation returned by reserve().")
        return row

    def _entry(self, conn: sqlite3.Connection, entry_id: int) -> Entry:
        return Entry(**dict(conn.execute(f"{self._select} WHERE e.id = ?", (entry_id,)).fetchone()))

    def release_orphans(self) -> list[Entry]:
        """Release holds whose owner process has ended, and expired holds. Returns the release entries."""
        with self._reading("checking for unfinished reservations") as conn:
            held = [a for a in (r[0] for r in conn.execute("SELECT name FROM accounts")) if self._totals(conn, a)[1]]
        if not held:
            return []
        released: list[Entry] = []
        with self._transaction("releasing unfinished reservations") as conn:
            marks = ", ".join("?" * len(held))
            rows = conn.execute(
                f"SELECT * FROM reservations r WHERE r.account IN ({marks}) AND NOT EXISTS (SELECT 1 FROM "
                "entries s WHERE s.reservation_id = r.id AND s.kind IN ('charge', 'release')) ORDER BY r.created",
                held).fetchall()
            now = time.time()
            for row in rows:
                owner = Owner(row["owner_pid"], row["owner_start"], row["owner_host"])
                if row["expires"] < now:
                    reason = "expired unfinished"
                elif not owner.is_alive():
                    reason = f"owner process {owner.pid} ended before committing"
                else:
                    continue
                entry = self._release_in(conn, row, reason)
                if entry is not None:
                    released.append(entry)
        for entry in released:
            log.warning("RefVideo: returned %d held credits to account '%s' (%s).", -entry.held, entry.account,
                        entry.reason)
        return released

    # ------------------------------------------------------------------ export

    def export_csv(self, target: str | os.PathLike, account: str | None = None) -> int:
        """Write the history to a CSV file atomically; returns the number of entries."""
        columns = [*_ENTRY_COLUMNS, "plan"]
        count = 0
        with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for entry in self.iter_history(account):
                row = asdict(entry)
                row["time"] = _iso(entry.time)
                writer.writerow([_csv_cell(row[c]) for c in columns])
                count += 1
        return count


def _csv_cell(value: Any) -> Any:
    """Text cells that a spreadsheet would run as a formula get a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


class Reservation:
    """Credits held for one clip: :meth:`commit` once the frames exist, :meth:`release` otherwise."""

    def __init__(self, ledger: Ledger, id: str, account: str, amount: int, entry: Entry) -> None:
        self.ledger = ledger
        self.id = id
        self.account = account
        self.amount = amount
        self.entry = entry

    def commit(self, *, generation_info: Any, wall_seconds: float, gpu_seconds: float | None = None,
               peak_vram_bytes: int | None = None) -> Entry | None:
        """Charge the held credits, recording the clip's generation info and metering."""
        return self.ledger.commit(self.id, generation_info=generation_info, wall_seconds=wall_seconds,
                                  gpu_seconds=gpu_seconds, peak_vram_bytes=peak_vram_bytes)

    def release(self, reason: str) -> Entry | None:
        """Return the held credits (no-op when already charged or released)."""
        return self.ledger.release(self.id, reason)

    def __repr__(self) -> str:
        return f"Reservation({self.id!r}, account={self.account!r}, amount={self.amount})"


_shared: dict[tuple[str, int], Ledger] = {}
_shared_lock = threading.Lock()


def shared_ledger(path: str | os.PathLike | None = None) -> Ledger:
    """This process's open ledger for ``path`` (default: :func:`host.ledger_path`), opened on first use."""
    resolved = Path(path) if path is not None else host.ledger_path()
    key = (os.path.abspath(resolved), os.getpid())
    with _shared_lock:
        ledger = _shared.get(key)
        if ledger is None:
            ledger = _shared[key] = Ledger(resolved)
        return ledger


def readable_ledger(path: str | os.PathLike | None = None) -> Ledger:
    """The shared ledger, or, where it cannot be opened for writing (a read-only folder), the file opened
    for reading only: balances, history and exports still work."""
    try:
        return shared_ledger(path)
    except WriteFailed:
        resolved = Path(path) if path is not None else host.ledger_path()
        if not resolved.is_file():
            raise
        return Ledger(resolved, read_only=True)


def close_shared_ledgers() -> None:
    """Close every ledger :func:`shared_ledger` opened in this process (files, locks)."""
    with _shared_lock:
        for ledger in _shared.values():
            ledger.close()
        _shared.clear()
