"""The ``refvideo`` CLI: exit codes, the ``--json`` shapes, refusals before any work, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refvideo import NODE_CLASS_MAPPINGS
from refvideo.engine.cli import main
from refvideo.engine.paths import API_WORKFLOWS_DIR, WORKFLOWS_DIR

RUN_KEYS = {"ok", "outputs", "seconds", "errors"}
ERROR_KEYS = {"node", "input", "type", "message"}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_nodes_json_is_object_info_shaped(capsys):
    code, out, _ = cli(capsys, "nodes", "--json")
    info = json.loads(out)
    assert code == 0 and set(info) == set(NODE_CLASS_MAPPINGS)
    for node_id, entry in info.items():
        assert {"input", "input_order", "output", "output_name", "output_is_list", "name", "display_name",
                "category", "output_node", "description"} <= set(entry)
        assert entry["name"] == node_id
    code, out, _ = cli(capsys, "nodes")
    assert code == 0 and "RefVideoSampler" in out


@pytest.mark.parametrize("content, kind", [
    ("{not json", "malformed_json"),
    ({"1": {"class_type": "NoSuchNode", "inputs": {}}}, "unknown_class"),
    ({"1": {"class_type": "JoinClips", "inputs": {"clip_1": ["7", 0]}}}, "bad_link"),
])
def test_run_refuses_bad_workflows_with_exit_2_and_json_errors(tmp_path, capsys, content, kind):
    code, out, _ = cli(capsys, "run", write(tmp_path, "wf.json", content), "--json")
    payload = json.loads(out)
    assert code == 2
    assert set(payload) == RUN_KEYS and payload["ok"] is False and payload["outputs"] == []
    assert all(set(e) == ERROR_KEYS for e in payload["errors"])
    assert kind in [e["type"] for e in payload["errors"]]


def test_run_refuses_a_ui_workflow_and_points_at_its_api_twin(capsys):
    ui_files = sorted(WORKFLOWS_DIR.glob("*.json"))
    assert ui_files, "no UI workflows shipped"
    code, out, _ = cli(capsys, "run", str(ui_files[0]), "--json")
    message = json.loads(out)["errors"][0]["message"]
    assert code == 2 and "UI-format" in message and str(API_WORKFLOWS_DIR / ui_files[0].name) in message


def test_bad_overrides_and_inputs_are_refused(capsys):
    workflow = str(API_WORKFLOWS_DIR / "demo_shot.json")
    code, out, _ = cli(capsys, "run", workflow, "--set", "nonsense", "--set", "999.seed=1", "--json")
    assert code == 2 and [e["type"] for e in json.loads(out)["errors"]] == ["bad_override"] * 2
    code, out, _ = cli(capsys, "run", workflow, "--input", "/no/such/file.png", "--json")
    assert code == 2 and json.loads(out)["errors"][0]["input"] == "--input"


def test_text_mode_errors_go_to_stderr(tmp_path, capsys):
    code, out, err = cli(capsys, "run", write(tmp_path, "wf.json", "[]"))
    assert code == 2 and out == "" and "refvideo: error:" in err


def test_no_command_prints_help(capsys):
    code, out, _ = cli(capsys)
    assert code == 2 and "COMMAND" in out


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "refvideo", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("refvideo ")
