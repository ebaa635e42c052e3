"""The ComfyUI HTTP client against a loopback server that answers like ComfyUI's API.

The real server is exercised by test_comfyui_integration.py when a ComfyUI checkout is
available; this test keeps the client's protocol handling covered everywhere: node errors,
execution errors, polling without a websocket, uploads and atomic downloads.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from refvideo.engine.errors import InputError
from refvideo.headless.comfy_client import ComfyClient, ServerError, ServerNodeFailed
from refvideo.headless.runner import WorkflowInvalid

GOOD = {"1": {"class_type": "Thing", "inputs": {"seed": 1}}}
FAILING = {"1": {"class_type": "Thing", "inputs": {"seed": 666}}}
INVALID = {"1": {"class_type": "Thing", "inputs": {"seed": -1}}}
PARTLY_INVALID = {"1": {"class_type": "Thing", "inputs": {"seed": 7}}}


class FakeComfy(BaseHTTPRequestHandler):
    """Answers like ComfyUI v0.8.0 for the requests the client makes."""

    history: dict = {}
    withdrawals: list = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, payload) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path.startswith("/history/"):
            pid = url.path.rsplit("/", 1)[1]
            self._send(200, {pid: self.history[pid]} if pid in self.history else {})
        elif url.path == "/view":
            query = urllib.parse.parse_qs(url.query)
            self._send(200, f"video:{query['filename'][0]}:{query['subfolder'][0]}".encode())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/prompt":
            prompt = json.loads(body)["prompt"]
            seed = prompt["1"]["inputs"]["seed"]
            if seed < 0:
                self._send(400, {"error": {"type": "prompt_outputs_failed_validation", "message": "failed"},
                                 "node_errors": {"1": {"class_type": "Thing", "errors": [
                                     {"type": "value_smaller_than_min", "message": "Value -1 smaller than min of 0",
                                      "details": "seed", "extra_info": {"input_name": "seed"}}]}}})
                return
            pid = f"p{seed}"
            if seed == 7:  # some outputs validate: ComfyUI queues those and answers 200 with the others' errors
                self._send(200, {"prompt_id": pid, "number": 1, "node_errors": {"2": {"class_type": "Save", "errors": [
                    {"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                     "details": "fps", "extra_info": {"input_name": "fps"}}]}}})
                return
            if seed == 666:
                self.history[pid] = {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": [
                    ["execution_error", {"node_id": "1", "node_type": "Thing", "exception_type": "ValueError",
                                         "exception_message": "it broke\n"}]]}}
            else:
                self.history[pid] = {"outputs": {"1": {"images": [
                    {"filename": "clip_00001.mp4", "subfolder": "shots", "type": "output"},
                    {"filename": "preview.png", "subfolder": "", "type": "temp"}], "text": ["ok"]}},
                    "status": {"status_str": "success", "completed": True, "messages": []}}
            self._send(200, {"prompt_id": pid, "number": 1, "node_errors": {}})
        elif self.path in ("/queue", "/interrupt"):
            self.withdrawals.append((self.path, json.loads(body)))
            self._send(200, {})
        elif self.path == "/upload/image":
            name = "ref (1).png" if b"different" in body else "ref.png"
            self._send(200, {"name": name, "subfolder": "", "type": "input"})
        else:
            self._send(404, {})


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeComfy)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_run_downloads_output_files(server, tmp_path):
    done = ComfyClient(server).run(GOOD, output_dir=tmp_path)
    assert done.prompt_id == "p1"
    assert done.files == {"1": [(tmp_path / "shots" / "clip_00001.mp4").resolve()]}
    assert (tmp_path / "shots" / "clip_00001.mp4").read_bytes() == b"video:clip_00001.mp4:shots"
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]


def test_downloads_stay_inside_the_output_folder(server, tmp_path):
    client = ComfyClient(server)
    for item in ({"filename": "x.mp4", "subfolder": "../../escape"}, {"filename": "/etc/x.mp4", "subfolder": ""},
                 {"filename": "x.mp4", "subfolder": "/tmp"}):
        with pytest.raises(InputError):
            client.download({**item, "type": "output"}, tmp_path / "out")
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "escape").exists()


def test_ctrl_c_while_waiting_cancels_the_prompt_on_the_server(server, tmp_path):
    from refvideo.engine import host
    from refvideo.engine.errors import Interrupted

    FakeComfy.withdrawals.clear()
    client = ComfyClient(server)
    pid = client.queue({"1": {"class_type": "Thing", "inputs": {"seed": 2}}})
    FakeComfy.history.pop(pid)  # still running
    host.request_interrupt()
    with pytest.raises(Interrupted):
        client.wait(pid, {}, poll_seconds=0.01)
    assert FakeComfy.withdrawals == [("/queue", {"delete": [pid]}), ("/interrupt", {"prompt_id": pid})]


def test_node_errors_become_problems(server, tmp_path):
    with pytest.raises(WorkflowInvalid) as info:
        ComfyClient(server).run(INVALID, output_dir=tmp_path)
    problem = info.value.problems[0]
    assert (problem.node, problem.class_type, problem.input) == ("1", "Thing", "seed")
    assert "smaller than min" in problem.message


def test_a_prompt_queued_with_node_errors_is_withdrawn_and_refused(server, tmp_path):
    """Nothing of a partly invalid workflow runs: it leaves the queue (or stops) and its errors are raised."""
    FakeComfy.withdrawals.clear()
    with pytest.raises(WorkflowInvalid) as info:
        ComfyClient(server).run(PARTLY_INVALID, output_dir=tmp_path)
    assert [(p.node, p.class_type, p.input) for p in info.value.problems] == [("2", "Save", "fps")]
    assert FakeComfy.withdrawals == [("/queue", {"delete": ["p7"]}), ("/interrupt", {"prompt_id": "p7"})]


def test_execution_error_is_readable(server, tmp_path):
    with pytest.raises(ServerNodeFailed) as info:
        ComfyClient(server).run(FAILING, output_dir=tmp_path)
    assert info.value.to_dict() == {"node": "1", "input": None, "type": "ValueError",
                                    "message": "node 1 (Thing) failed on the server: ValueError: it broke"}


def test_upload_returns_the_stored_name(server, tmp_path):
    image = tmp_path / "ref.png"
    image.write_bytes(b"same")
    assert ComfyClient(server).upload_image(image) == "ref.png"
    image.write_bytes(b"different")
    assert ComfyClient(server).upload_image(image) == "ref (1).png"


def test_bad_addresses(tmp_path):
    with pytest.raises(InputError):
        ComfyClient("ftp://example")
    with pytest.raises(ServerError) as info:
        ComfyClient("http://127.0.0.1:9", timeout=2).run(GOOD, output_dir=Path(tmp_path))
    assert "cannot reach ComfyUI" in str(info.value)
