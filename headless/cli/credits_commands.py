"""``refvideo credits balance | topup N | history | estimate | export FILE.csv``: the credit ledger."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from ...engine.credits.ledger import DEFAULT_ACCOUNT, Entry, readable_ledger, shared_ledger
from ...engine.credits.pricing import estimate
from ...engine.errors import InputError
from ...engine.number_text import exact_number
from ...engine.sizes import RESOLUTIONS
from ...engine.storage import check_target
from .main import EXIT_OK, emit


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    credits = commands.add_parser("credits", help="the credit ledger: balance, top-ups, history, estimates, export",
                                  description="Check and top up credit accounts, price a plan, and read or export "
                                              "the ledger's history.")
    actions = credits.add_subparsers(dest="credits_action", metavar="ACTION", required=True)
    account = argparse.ArgumentParser(add_help=False)
    account.add_argument("--account", default=DEFAULT_ACCOUNT, help=f"the account (default: {DEFAULT_ACCOUNT})")

    balance = actions.add_parser("balance", parents=[parent, account], help="show an account's credits")
    balance.set_defaults(func=balance_command)

    topup = actions.add_parser("topup", parents=[parent, account], help="add credits to an account")
    topup.add_argument("amount", metavar="N", help="whole number of credits to add")
    topup.add_argument("--reason", default="top-up", help="a note kept with the entry")
    topup.set_defaults(func=topup_command)

    history = actions.add_parser("history", parents=[parent, account], help="list an account's ledger entries")
    history.add_argument("--limit", default="50", metavar="N", help="the last N entries (0: all; default 50)")
    history.set_defaults(func=history_command)

    price = actions.add_parser("estimate", parents=[parent], help="price a plan (nothing is charged)")
    price.add_argument("--model", help="backend or model folder name (default: priced as a diffusion model)")
    price.add_argument("--resolution", required=True, help=f"one of {', '.join(RESOLUTIONS)}")
    price.add_argument("--duration", required=True, metavar="S", help="seconds per clip (5-8)")
    price.add_argument("--audio", action="store_true", help="each clip gets AI-generated audio")
    price.add_argument("--clips", default="1", metavar="N", help="number of clips (default 1)")
    price.set_defaults(func=estimate_command)

    export = actions.add_parser("export", parents=[parent], help="write the history to a CSV file")
    export.add_argument("file", metavar="FILE.csv", help="the CSV file to write")
    export.add_argument("--account", default=None, help="only this account (default: all accounts)")
    export.set_defaults(func=export_command)


MAX_COUNT = 10**9  # the most entries or clips one command asks for


def _whole(text: str, *, input: str, lowest: int) -> int:
    value = exact_number(text)
    rule = f"Give a whole number from {lowest} to {MAX_COUNT}."
    if not isinstance(value, int):
        raise InputError(f"'{text[:40]}' is not a whole number.", input=input, fix=rule)
    if not lowest <= value <= MAX_COUNT:
        raise InputError(f"{text.strip()[:40]} is outside {lowest}-{MAX_COUNT}.", input=input, fix=rule)
    return value


def balance_command(args: argparse.Namespace) -> int:
    state = readable_ledger().balance(args.account)
    text = f"Account '{state.account}': {state.balance} credits"
    if state.held:
        text += f" ({state.held} held by running generations, {state.available} available)"
    emit(args, {"account": state.account, "balance": state.balance}, text + ".")
    return EXIT_OK


def topup_command(args: argparse.Namespace) -> int:
    ledger = shared_ledger()
    entry = ledger.topup(args.account, args.amount, reason=args.reason)
    emit(args, {"account": entry.account, "added": entry.amount, "balance": entry.balance_after},
         f"Added {entry.amount} credits to account '{entry.account}'; balance {entry.balance_after}.")
    return EXIT_OK


def _row(entry: Entry) -> str:
    when = datetime.fromtimestamp(entry.time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    metering = ""
    if entry.kind == "charge":
        metering = f"  wall {entry.wall_seconds:.1f} s"
        if entry.gpu_seconds is not None:
            metering += f", GPU {entry.gpu_seconds:.1f} s"
        if entry.peak_vram_bytes is not None:
            metering += f", peak VRAM {entry.peak_vram_bytes / 2**30:.2f} GiB"
    change = entry.amount if entry.kind in ("topup", "charge", "refund") else -entry.held
    where = f"  prompt {entry.prompt_id} node {entry.node_id}" if entry.prompt_id else ""
    return (f"{entry.id:>6}  {when}  {entry.kind:<7} {change:>+9}  balance {entry.balance_after:>9}  "
            f"{entry.reason}{where}{metering}")


def history_command(args: argparse.Namespace) -> int:
    limit = _whole(args.limit, input="--limit", lowest=0) or None
    entries = readable_ledger().history(args.account, limit=limit)
    if args.json:
        emit(args, {"account": args.account, "entries": [e.to_dict() for e in entries]})
    else:
        emit(args, None, "\n".join(_row(e) for e in entries) or f"Account '{args.account}' has no entries yet.")
    return EXIT_OK


def estimate_command(args: argparse.Namespace) -> int:
    price = estimate(model=args.model, resolution=args.resolution, seconds=args.duration, audio=args.audio,
                     clips=_whole(args.clips, input="--clips", lowest=1))
    emit(args, price.to_dict(), f"{price.describe()}.")
    return EXIT_OK


def export_command(args: argparse.Namespace) -> int:
    target = Path(args.file).expanduser()
    if target.suffix.lower() != ".csv":
        raise InputError(f"'{args.file}' does not end in .csv.", input="FILE.csv", fix="Name a .csv file.")
    check_target(target, input_name="FILE.csv")
    count = readable_ledger().export_csv(target, args.account)
    emit(args, {"file": str(target.resolve()), "entries": count}, f"Wrote {count} entries to {target.resolve()}.")
    return EXIT_OK
