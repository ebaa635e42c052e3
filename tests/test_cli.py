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
from refvideo.engine.paths import API_WORKFLOWS_DIR, WORKFLOWS_DIR
from refvideo.headless.cli import main

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


DEMO = str(API_WORKFLOWS_DIR / "demo_shot.json")


def refvideo(*argv: str, env_extra: dict | None = None, prelude: str = "") -> subprocess.Popen:
    """The CLI in its own process (``prelude`` runs first, e.g. to hide a package)."""
    code = prelude + "import sys\nfrom refvideo.headless.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def read_until(proc: subprocess.Popen, text: str, seconds: float) -> str:
    """A process's stderr lines until one holds ``text`` (or it ends, or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    seen = ""
    while text not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    return seen


@pytest.mark.slow
def test_run_succeeds_with_exit_0_and_lists_its_files(tmp_path, capsys):
    out_dir = tmp_path / "renders"
    code, out, _ = cli(capsys, "run", DEMO, "--set", "3.resolution=144p", "--set", "4.filename_prefix=cli/test",
                       "--output-dir", str(out_dir), "--json")
    payload = json.loads(out)
    assert code == 0 and payload["ok"] is True and payload["errors"] == [] and payload["seconds"] > 0
    files = [Path(f) for entry in payload["outputs"] for f in entry["files"]]
    assert [entry["node"] for entry in payload["outputs"]] == ["4"]
    assert len(files) == 1 and files[0].is_absolute() and files[0].is_file()
    assert files[0].parent == out_dir / "cli" and files[0].suffix == ".mp4"

    code, out, _ = cli(capsys, "run", DEMO, "--set", "3.resolution=144p", "--output-dir", str(out_dir))
    assert code == 0 and Path(out.strip()).is_file()


@pytest.mark.slow
def test_a_missing_optional_package_fails_the_run_with_exit_1_naming_it(tmp_path):
    proc = refvideo("run", DEMO, "--set", "2.model=tiny-random", "--set", "3.resolution=144p", "--json",
                    "--output-dir", str(tmp_path), env_extra={"REFVIDEO_HOME": str(tmp_path / "home")},
                    prelude="import sys\nsys.modules['diffusers'] = None\n")
    out, err = proc.communicate(timeout=120)
    payload = json.loads(out)
    assert proc.returncode == 1, err
    assert payload["ok"] is False and payload["errors"][0]["node"] == "3"
    assert "pip install diffusers" in payload["errors"][0]["message"]
    assert not list(tmp_path.rglob("*.mp4"))


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_exit_130_and_no_output(tmp_path):
    out_dir = tmp_path / "renders"
    proc = refvideo("run", DEMO, "--set", "3.resolution=1080p", "--set", "3.duration=8", "--output-dir",
                    str(out_dir), env_extra={"REFVIDEO_HOME": str(tmp_path / "home")})
    seen = read_until(proc, "RefVideoSampler", 120)
    assert "RefVideoSampler" in seen, seen
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "stopping after the current step" in err
    assert not [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.exists() else True


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGINT, signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM, signal.SIGTERM, signal.SIGINT)])
def test_repeated_signals_end_cleanly_with_one_exit_code_and_no_traceback(tmp_path, signals):
    out_dir = tmp_path / "renders"
    proc = refvideo("run", DEMO, "--set", "3.resolution=1080p", "--set", "3.duration=8", "--output-dir",
                    str(out_dir), env_extra={"REFVIDEO_HOME": str(tmp_path / "home")})
    assert "RefVideoSampler" in read_until(proc, "RefVideoSampler", 120)
    time.sleep(0.3)
    for signum in signals:  # in quick succession: the later ones land during the clean-up
        proc.send_signal(signum)
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if signals[0] == signal.SIGINT else 128 + signal.SIGTERM), err
    assert "Traceback" not in err
    assert not [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.exists() else True
