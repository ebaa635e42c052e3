"""A client for a running ComfyUI server: submit, follow, fetch (``refvideo run --server``).

It speaks ComfyUI's HTTP API: ``POST /upload/image``, ``POST /prompt`` (400 answers carry
``node_errors``), the ``/ws`` websocket for progress (``/history`` polling when the socket
is unavailable), ``GET /history/<id>`` for outputs and ``GET /view`` to download them.
"""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine import host
from ..engine.errors import GenerationError, InputError, Interrupted, RefVideoError
from ..engine.paths import contained
from ..engine.storage import atomic_path
from .runner import Problem, RunResult, WorkflowInvalid

ProgressCallback = Callable[[str, str, int, int], None]  # node id, class, value, max


class ServerError(RefVideoError):
    """The ComfyUI server could not be reached or answered unexpectedly."""


class ServerNodeFailed(GenerationError):
    """A node failed while the server ran the workflow (ComfyUI's ``execution_error``)."""

    def __init__(self, node: str | None, class_type: str | None, exc_type: str, message: str) -> None:
        self.node, self.class_type, self.exc_type = node, class_type, exc_type
        super().__init__(f"node {node} ({class_type}) failed on the server: {exc_type}: {message}")

    def to_dict(self) -> dict:
        return {"node": self.node, "input": None, "type": self.exc_type, "message": self.message}


class ComfyClient:
    """One ComfyUI server at ``base_url`` (``http://127.0.0.1:8188``)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(f"'{base_url}' is not a server address.", input="--server",
                              fix="Give the ComfyUI address, e.g. http://127.0.0.1:8188")
        self.base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    # ----------------------------------------------------------------- HTTP

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"cannot reach ComfyUI at {self.base} ({reason}).", input="--server",
                              fix="Start ComfyUI (python main.py --listen 127.0.0.1) or correct the address.") from None

    def _json(self, method: str, path: str, payload: Any | None = None) -> tuple[int, Any]:
        body = json.dumps(payload).encode() if payload is not None else None
        status, raw = self._request(method, path, body, {"Content-Type": "application/json"} if body else None)
        try:
            return status, json.loads(raw.decode() or "null")
        except (ValueError, UnicodeDecodeError):
            return status, {"raw": raw[:500].decode(errors="replace")}

    def upload_image(self, path: Path) -> str:
        """Upload ``path`` into the server's input folder; return the name it was stored as."""
        boundary = uuid.uuid4().hex
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts = [
            (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
             f"Content-Type: {mime}\r\n\r\n").encode() + path.read_bytes() + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\nfalse\r\n'.encode(),
            f"--{boundary}--\r\n".encode(),
        ]
        status, raw = self._request("POST", "/upload/image", b"".join(parts),
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise ServerError(f"uploading {path} answered {status}: {raw[:300].decode(errors='replace')}",
                              input="--input", fix="Check that the file is an image ComfyUI accepts (PNG, JPEG, "
                                                   "WebP) and that the server's input folder is writable.")
        answer = json.loads(raw)
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, workflow: dict, *, extra_pnginfo: dict | None = None) -> str:
        """Submit ``workflow``; a refused prompt raises :class:`WorkflowInvalid` with its node errors."""
        payload: dict[str, Any] = {"prompt": workflow, "client_id": self.client_id}
        if extra_pnginfo:
            payload["extra_data"] = {"extra_pnginfo": extra_pnginfo}
        status, data = self._json("POST", "/prompt", payload)
        if status == 200 and isinstance(data, dict) and "prompt_id" in data:
            prompt_id = str(data["prompt_id"])
            if data.get("node_errors"):  # ComfyUI queued only the outputs that validate: run none of it
                self.cancel(prompt_id)
                raise WorkflowInvalid(problems_from_response(data, workflow))
            return prompt_id
        if status == 400 and isinstance(data, dict):
            raise WorkflowInvalid(problems_from_response(data, workflow))
        raise ServerError(f"POST /prompt answered {status}: {str(data)[:300]}",
                          fix="See the ComfyUI console for the reason; check that the address is a ComfyUI server.")

    def history(self, prompt_id: str) -> dict | None:
        status, data = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        if status != 200 or not isinstance(data, dict):
            return None
        return data.get(prompt_id)

    def cancel(self, prompt_id: str) -> None:
        """Take ``prompt_id`` off the queue, or stop it if it runs (never another client's prompt)."""
        try:
            self._json("POST", "/queue", {"delete": [prompt_id]})
            self._json("POST", "/interrupt", {"prompt_id": prompt_id})
        except ServerError:
            pass

    def download(self, item: dict, folder: Path) -> Path:
        """Download one output file (``filename``/``subfolder``/``type``) into ``folder``."""
        query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                        "type": item.get("type", "output")})
        relative = "/".join(p for p in (item.get("subfolder") or "", str(item["filename"])) if p)
        target = contained(folder, relative, input_name="--server")
        request = urllib.request.Request(f"{self.base}/view?{query}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response, atomic_path(target) as tmp:
                with open(tmp, "wb") as fh:
                    while chunk := response.read(1 << 20):
                        fh.write(chunk)
        except urllib.error.HTTPError as exc:
            raise ServerError(f"downloading {item['filename']} answered {exc.code}.") from None
        return target.resolve()

    # ----------------------------------------------------------------- following a run

    def wait(self, prompt_id: str, workflow: dict, *, on_progress: ProgressCallback | None = None,
             poll_seconds: float = 0.5) -> dict:
        """Follow ``prompt_id`` until it ends; return its history entry or raise what went wrong."""
        try:
            import websocket  # websocket-client
        except ImportError:
            websocket = None
        if websocket is not None:
            try:
                self._follow_socket(websocket, prompt_id, workflow, on_progress)
            except (OSError, websocket.WebSocketException):
                pass  # fall back to polling below
        while True:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
                return self._finished(entry)
            self._check_interrupt(prompt_id)
            time.sleep(poll_seconds)

    def _check_interrupt(self, prompt_id: str) -> None:
        """Ctrl-C in the CLI: stop the run on the server too, then raise."""
        if host.interrupt_requested():
            self.cancel(prompt_id)
            raise Interrupted("Interrupted: the run was stopped on the server; no output was downloaded.")

    def _follow_socket(self, websocket: Any, prompt_id: str, workflow: dict,
                       on_progress: ProgressCallback | None) -> None:
        url = self.base.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        sock = websocket.create_connection(url, timeout=self.timeout)
        try:
            sock.settimeout(1.0)
            deadline_idle = time.monotonic() + 3600
            while time.monotonic() < deadline_idle:
                try:
                    raw = sock.recv()
                except websocket.WebSocketTimeoutException:
                    self._check_interrupt(prompt_id)
                    entry = self.history(prompt_id)
                    if entry and entry.get("status", {}).get("completed") is not None:
                        return
                    continue
                if not isinstance(raw, str):
                    continue  # binary preview frames
                message = json.loads(raw)
                data = message.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                kind = message.get("type")
                if kind == "progress" and on_progress is not None:
                    node = str(data.get("node"))
                    on_progress(node, workflow.get(node, {}).get("class_type", "?"), int(data.get("value", 0)),
                                int(data.get("max", 1)))
                elif kind == "executing" and on_progress is not None and data.get("node") is not None:
                    node = str(data["node"])
                    on_progress(node, workflow.get(node, {}).get("class_type", "?"), 0, 0)
                elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                    return
                elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    return
        finally:
            sock.close()

    @staticmethod
    def _finished(entry: dict) -> dict:
        status = entry.get("status") or {}
        for kind, data in status.get("messages") or []:
            if kind == "execution_error":
                raise ServerNodeFailed(str(data.get("node_id")), data.get("node_type"),
                                       data.get("exception_type", "Error"), data.get("exception_message", "").strip())
            if kind == "execution_interrupted":
                raise Interrupted("The run was interrupted on the server; no output was kept.")
        if status.get("status_str") == "error":
            raise GenerationError("the server reported an error without details; see the ComfyUI log.")
        return entry

    def run(self, workflow: dict, *, output_dir: Path, extra_pnginfo: dict | None = None,
            on_progress: ProgressCallback | None = None) -> RunResult:
        """Submit, follow and download; interrupts the server's run on Ctrl-C."""
        prompt_id = self.queue(workflow, extra_pnginfo=extra_pnginfo)
        try:
            entry = self.wait(prompt_id, workflow, on_progress=on_progress)
        except KeyboardInterrupt:
            self.cancel(prompt_id)
            raise
        result = RunResult(prompt_id=prompt_id, ui=entry.get("outputs") or {})
        for node_id, ui in result.ui.items():
            items = [i for values in ui.values() if isinstance(values, list) for i in values
                     if isinstance(i, dict) and "filename" in i and i.get("type", "output") == "output"]
            if items:
                result.files[node_id] = [self.download(i, output_dir) for i in items]
        return result


def problems_from_response(data: dict, workflow: dict) -> list[Problem]:
    """Turn a 400 answer of ``POST /prompt`` into problems naming node, class and input."""
    problems: list[Problem] = []
    for node_id, info in (data.get("node_errors") or {}).items():
        for error in info.get("errors") or []:
            detail = error.get("details") or ""
            message = error.get("message", "error") + (f": {detail}" if detail else "")
            problems.append(Problem(error.get("type", "invalid"), message, str(node_id),
                                    info.get("class_type") or workflow.get(str(node_id), {}).get("class_type"),
                                    (error.get("extra_info") or {}).get("input_name")))
    if not problems:
        error = data.get("error") or {}
        if isinstance(error, dict):
            problems.append(Problem(error.get("type", "invalid_prompt"),
                                    error.get("message", "the server refused the workflow") +
                                    (f": {error['details']}" if error.get("details") else "")))
        else:
            problems.append(Problem("invalid_prompt", str(error)))
    return problems
