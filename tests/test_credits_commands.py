"""``refvideo credits``: the --json shapes, exit codes and the ledger each command reaches."""

from __future__ import annotations

import csv
import json

import pytest

from refvideo.engine import host
from refvideo.engine.credits.ledger import Ledger
from refvideo.headless.cli.main import main


def run(capsys, *argv: str) -> tuple[int, object]:
    code = main(["credits", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_balance_and_topup_json_shapes(capsys):
    assert run(capsys, "balance") == (0, {"account": "default", "balance": 0})
    assert run(capsys, "topup", "840") == (0, {"account": "default", "added": 840, "balance": 840})
    assert run(capsys, "topup", "60", "--account", "studio") == (0, {"account": "studio", "added": 60, "balance": 60})
    assert run(capsys, "balance", "--account", "studio") == (0, {"account": "studio", "balance": 60})
    assert run(capsys, "balance") == (0, {"account": "default", "balance": 840})


@pytest.mark.parametrize("amount", ["-5", "nan", "inf", "1e400", "2.5", "10000000000", "lots"])
def test_bad_top_ups_exit_2_and_change_nothing(capsys, amount):
    code, payload = run(capsys, "topup", amount)
    assert code == 2 and payload["ok"] is False
    assert payload["errors"][0]["type"] == "InputError" and payload["errors"][0]["input"] == "amount"
    assert Ledger().history() == []


def test_estimate_json_without_a_model_prices_a_diffusion_model(capsys):
    code, payload = run(capsys, "estimate", "--resolution", "1080p", "--duration", "6", "--audio", "--clips", "3")
    assert code == 0
    assert (payload["credits"], payload["per_clip"], payload["model"], payload["audio"]) == (6300, 2100, None, True)
    code, payload = run(capsys, "estimate", "--model", "previz", "--resolution", "720p", "--duration", "5")
    assert payload["credits"] == 0
    code, payload = run(capsys, "estimate", "--resolution", "720p", "--duration", "9")
    assert code == 2 and payload["errors"][0]["input"] == "duration"
    code, payload = run(capsys, "estimate", "--resolution", "720p", "--duration", "5", "--clips", "zero")
    assert code == 2 and payload["errors"][0]["input"] == "--clips"


def test_history_lists_entries_with_running_balances(capsys):
    ledger = Ledger()
    ledger.topup("default", 1000)
    ledger.reserve("default", 840, reason="clip", prompt_id="p1", node_id="3").commit(
        generation_info={"seed": 1}, wall_seconds=4.0, gpu_seconds=3.5, peak_vram_bytes=2**30)
    code, payload = run(capsys, "history")
    assert code == 0 and payload["account"] == "default"
    assert [(e["kind"], e["balance_after"]) for e in payload["entries"]] == [
        ("topup", 1000), ("reserve", 1000), ("charge", 160)]
    assert payload["entries"][2]["generation_info"] == {"seed": 1}
    assert main(["credits", "history", "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert "charge" in text and "-840" in text and "GPU 3.5 s" in text and "peak VRAM 1.00 GiB" in text
    assert "topup" not in text


def test_export_writes_a_csv(capsys, tmp_path):
    ledger = Ledger()
    ledger.topup("default", 100)
    ledger.topup("studio", 5)
    target = tmp_path / "out" / "ledger.csv"
    code, payload = run(capsys, "export", str(target))
    assert code == 0 and payload == {"file": str(target.resolve()), "entries": 2}
    assert [r["account"] for r in csv.DictReader(target.open(encoding="utf-8"))] == ["default", "studio"]
    code, payload = run(capsys, "export", str(tmp_path / "ledger.txt"))
    assert code == 2


def test_comfyui_dir_reaches_the_ledger_comfyui_uses(capsys, tmp_path):
    comfy = tmp_path / "ComfyUI"
    assert run(capsys, "topup", "7") == (0, {"account": "default", "added": 7, "balance": 7})  # standalone
    assert main(["credits", "topup", "500", "--comfyui-dir", str(comfy)]) == 2  # not a ComfyUI folder: refused
    assert "is not a ComfyUI folder" in capsys.readouterr().err
    assert not comfy.exists()
    comfy.mkdir()
    (comfy / "main.py").write_text("")
    assert main(["credits", "topup", "500", "--comfyui-dir", str(comfy)]) == 0
    capsys.readouterr()
    assert Ledger(comfy / "user" / "__refvideo" / "ledger.sqlite3").balance().balance == 500
    assert Ledger(host.home() / "ledger.sqlite3").balance().balance == 7


def test_text_output_says_what_is_held(capsys):
    ledger = Ledger()
    ledger.topup("default", 1000)
    ledger.reserve("default", 840, reason="clip")
    assert main(["credits", "balance"]) == 0
    assert capsys.readouterr().out.strip() == ("Account 'default': 1000 credits (840 held by running generations, "
                                               "160 available).")
