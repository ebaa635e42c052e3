"""The shipped workflows inside a real ComfyUI v0.8.0, over its HTTP API and through ``refvideo run --server``.

Runs when COMFYUI_DIR and COMFYUI_PY are set (see docs/development.md); skips with the reason
otherwise. One server is started for the module, with the pack linked into a temporary base
directory, and only that server is stopped. The single shot runs as shipped (720p); the others
run at 144p, where the point is the plumbing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import comfyui_server

pytestmark = [pytest.mark.comfyui]
_reason = comfyui_server.missing_reason()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

PACK_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = PACK_ROOT / "workflows"
SHIPPED_AT_144P = ("continuity_three_shots", "shot_with_audio", "shot_1080p", "reference_sheet", "previz_to_diffusion",
                   "demo_shot", "storyboard_sequence")
# node -> what it writes: frames per file (video) or the number of PNG files (reference sheet)
EXPECTED = {
    "single_shot": {"5": 81},
    "continuity_three_shots": {"6": 81, "8": 81, "10": 81, "12": 3 * 81 - 2 * 9},
    "shot_with_audio": {"6": 81},
    "shot_1080p": {"5": 81},
    "reference_sheet": {"2": 3},
    "previz_to_diffusion": {"4": 21, "7": 21},
    "demo_shot": {"4": 81},
    "storyboard_sequence": {"5": 3 * 81 - 2 * 8},
}


@pytest.fixture(scope="module")
def bystander():
    """Another server on this machine (as another ComfyUI would be): it must outlive this module's server."""
    process = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield process
    alive = process.poll() is None
    process.terminate()
    process.wait(timeout=10)
    assert alive, "stopping the test's ComfyUI also stopped another process"


@pytest.fixture(scope="module")
def server(bystander, tmp_path_factory):
    started = comfyui_server.start(tmp_path_factory.mktemp("comfyui_base"))
    yield started
    started.stop()
    assert started.process.poll() is not None  # only this process was stopped; bystander checks the rest


def api_workflow(stem: str, *, small: bool = True) -> dict:
    workflow = json.loads((WORKFLOWS / "api" / f"{stem}.json").read_text(encoding="utf-8"))
    for node in workflow.values():
        if small and node["class_type"] == "RefVideoSampler":
            node["inputs"]["resolution"] = "144p"
        if small and node["class_type"] == "RefVideoStoryboard":
            node["inputs"]["storyboard"] = node["inputs"]["storyboard"].replace("resolution: 720p", "resolution: 144p")
    return workflow


def output_files(server) -> set[Path]:
    return {p.relative_to(server.output_dir) for p in server.output_dir.rglob("*") if p.is_file()}


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def files_of(entry: dict, server) -> dict[str, list[Path]]:
    """The files each output node reported in its history entry."""
    found: dict[str, list[Path]] = {}
    for node, ui in entry["outputs"].items():
        for item in ui.get("images", []):
            found.setdefault(node, []).append(server.output_dir / item["subfolder"] / item["filename"])
    return found


def queue(server, workflow: dict, client_id: str | None = None) -> str:
    status, answer = server.post("/prompt", {"prompt": workflow, "client_id": client_id or uuid.uuid4().hex})
    assert status == 200, answer
    return answer["prompt_id"]


def messages(entry: dict) -> dict[str, dict]:
    return {kind: data for kind, data in entry["status"]["messages"]}


def refvideo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "refvideo", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=PACK_ROOT)


# --------------------------------------------------------------------------- the workflows run


@pytest.mark.parametrize("stem", ["single_shot", *SHIPPED_AT_144P])
def test_every_api_workflow_runs_in_comfyui_and_writes_its_files(server, stem):
    entry = server.wait_for(queue(server, api_workflow(stem, small=stem != "single_shot")))
    assert entry["status"]["status_str"] == "success", messages(entry)
    written = files_of(entry, server)
    assert set(written) == set(EXPECTED[stem])
    for node, expected in EXPECTED[stem].items():
        assert all(p.is_file() and p.stat().st_size > 0 for p in written[node])
        if stem == "reference_sheet":
            assert len(written[node]) == expected
        else:
            [path] = written[node]
            assert frame_count(path) == expected, (node, path)
    if stem == "single_shot":
        import av

        with av.open(str(written["5"][0])) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (1280, 720)
            info = json.loads(container.metadata["refvideo"])
            assert "workflow" in container.metadata or "prompt" in container.metadata
        assert info["model"] == "previz" and info["rendered"]["frames"] == 81
    if stem == "reference_sheet":
        manifests = list((server.base / "user").rglob("manifest.json"))
        assert any(json.loads(m.read_text())["name"] == "Mara at the harbour" for m in manifests)


def test_the_template_browser_lists_every_ui_workflow_with_its_thumbnail(server):
    status, templates = server.get("/workflow_templates")
    assert status == 200
    assert sorted(templates["refvideo"]) == sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    import urllib.request

    for stem in templates["refvideo"]:
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/refvideo/{stem}.json", timeout=10) as r:
            assert json.loads(r.read()) == json.loads((WORKFLOWS / f"{stem}.json").read_text(encoding="utf-8"))
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/refvideo/{stem}.jpg", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/jpeg" and r.read(2) == b"\xff\xd8"


# --------------------------------------------------------------------------- failures are readable


def test_a_broken_prompt_gets_node_errors_naming_each_input(server):
    workflow = api_workflow("single_shot")
    workflow["4"]["inputs"].update(resolution="4K", seed=-1)
    del workflow["4"]["inputs"]["prompt"]
    workflow["5"]["inputs"]["fps"] = ["4", 0]  # IMAGE into a FLOAT
    workflow["1"]["inputs"]["image_1"] = "../../etc/passwd"
    before = output_files(server)
    status, answer = server.post("/prompt", {"prompt": workflow})
    errors = {node: {(e["type"], e["extra_info"].get("input_name")) for e in info["errors"]}
              for node, info in answer["node_errors"].items()}
    assert {("value_not_in_list", "resolution"), ("value_smaller_than_min", "seed"),
            ("required_input_missing", "prompt")} <= errors["4"]
    assert ("return_type_mismatch", "fps") in errors["5"]
    assert ("value_not_in_list", "image_1") in errors["1"]
    # ComfyUI still queues the outputs that validate (the Credit Meter, after its loader): they write nothing.
    # `refvideo run --server` withdraws such a prompt (see the last test).
    assert status == 200 and set(answer["node_errors"]) == {"1", "4", "5"}
    entry = server.wait_for(answer["prompt_id"])
    # the loader's report shows only when it ran (an earlier test may have left it cached)
    assert "3" in entry["outputs"] and set(entry["outputs"]) <= {"2", "3"} and output_files(server) == before


def test_a_node_failing_at_run_time_reports_a_readable_execution_error(server):
    workflow = api_workflow("previz_to_diffusion")
    workflow["9"]["inputs"]["match_frames_of"] = "auto"  # a depth video timed for Wan: 81 frames, not 21
    entry = server.wait_for(queue(server, workflow))
    assert entry["status"]["status_str"] == "error"
    error = messages(entry)["execution_error"]
    assert (error["node_id"], error["node_type"]) == ("6", "RefVideoSampler")
    assert "control video has 81 frames" in error["exception_message"]
    assert "21" in error["exception_message"] and "match_frames_of" in error["exception_message"]
    assert "Traceback" not in error["exception_message"]
    assert not (server.output_dir / "RefVideo" / "previz_to_diffusion" / "diffusion_00002.mp4").exists()


# --------------------------------------------------------------------------- interrupting


@pytest.mark.parametrize("stage, node", [("sampler", "4"), ("encoder", "5")])
def test_interrupting_a_running_shot_leaves_no_partial_output(server, stage, node):
    websocket = pytest.importorskip("websocket")
    workflow = api_workflow("single_shot", small=False)
    workflow["4"]["inputs"]["seed"] = 1000 + int(node)  # not served from the cache
    workflow["5"]["inputs"].update(filename_prefix=f"RefVideo/interrupted/{stage}", preset="veryslow")
    before = output_files(server)
    client_id = uuid.uuid4().hex
    sock = websocket.create_connection(server.url.replace("http", "ws") + f"/ws?clientId={client_id}", timeout=120)
    try:
        prompt_id = queue(server, workflow, client_id)
        while True:  # interrupt at the first progress report of the chosen node
            raw = sock.recv()
            if not isinstance(raw, str):
                continue
            message = json.loads(raw)
            data = message.get("data") or {}
            if message["type"] == "progress" and str(data.get("node")) == node and data.get("value", 0) >= 1:
                assert server.post("/interrupt", {})[0] == 200
                break
            assert message["type"] not in ("execution_success", "execution_error"), message
    finally:
        sock.close()
    entry = server.wait_for(prompt_id)
    assert "execution_interrupted" in messages(entry), messages(entry)
    assert messages(entry)["execution_interrupted"]["node_id"] == node
    assert output_files(server) == before
    assert not list((server.base / "temp").rglob("*.mp4"))


# --------------------------------------------------------------------------- the headless recipe


def test_refvideo_run_server_uploads_runs_with_progress_and_downloads(server, tmp_path):
    own = tmp_path / "my_mara.png"
    shutil.copy(PACK_ROOT / "samples" / "character_mara.png", own)
    out = tmp_path / "downloads"
    done = refvideo("run", "workflows/api/single_shot.json", "--server", server.url, "--input", str(own),
                    "--set", "1.image_1=my_mara.png", "--set", "4.seed=4242", "--output-dir", str(out))
    assert done.returncode == 0, done.stderr
    assert "RefVideoSampler" in done.stderr and "81/81" in done.stderr  # per-frame progress of the shot
    [path] = [Path(line) for line in done.stdout.split()]
    assert path.is_file() and path.is_relative_to(out) and frame_count(path) == 81
    served = server.output_dir / path.relative_to(out)
    assert served.read_bytes() == path.read_bytes()
    assert (server.input_dir / "my_mara.png").is_file()


def test_refvideo_run_server_reports_refusals_and_failures_as_json(server, tmp_path):
    before = output_files(server)
    refused = refvideo("run", "workflows/api/single_shot.json", "--server", server.url, "--json",
                       "--set", "4.resolution=4K", "--output-dir", str(tmp_path))
    assert refused.returncode == 2
    report = json.loads(refused.stdout)
    assert not report["ok"] and {(e["node"], e["input"]) for e in report["errors"]} >= {("4", "resolution")}
    assert output_files(server) == before and not list(tmp_path.rglob("*.mp4"))  # withdrawn: nothing ran
    failed = refvideo("run", "workflows/api/previz_to_diffusion.json", "--server", server.url, "--json",
                      "--set", "9.match_frames_of=auto", "--set", "10.resolution=144p", "--output-dir", str(tmp_path))
    assert failed.returncode == 1
    [error] = json.loads(failed.stdout)["errors"]
    assert error["node"] == "6" and "control video has 81 frames" in error["message"]

