"""Start and stop a real ComfyUI server with this pack linked into its custom_nodes.

Used by the integration tests. The checkout and its Python are given by ``COMFYUI_DIR`` and
``COMFYUI_PY``; the server gets a temporary base directory (custom_nodes, input, output,
user) so the checkout itself is never changed, and only the process started here is stopped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent


def missing_reason() -> str | None:
    """Why the integration tests cannot run here, or None when they can."""
    comfy_dir, comfy_py = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PY")
    if not comfy_dir or not comfy_py:
        return ("set COMFYUI_DIR (a ComfyUI v0.8.0 checkout) and COMFYUI_PY (its Python with this pack's "
                "requirements) to run the real-ComfyUI integration tests")
    if not Path(comfy_dir, "main.py").is_file():
        return f"COMFYUI_DIR={comfy_dir} has no main.py"
    if not Path(comfy_py).exists():
        return f"COMFYUI_PY={comfy_py} does not exist"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ComfyServer:
    process: subprocess.Popen
    url: str
    base: Path
    log_path: Path

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, timeout: float = 30) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def post(self, path: str, payload: object, timeout: float = 30) -> tuple[int, object]:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            body = exc.read()
            return exc.code, json.loads(body) if body else None

    def wait_for(self, prompt_id: str, timeout: float = 300) -> dict:
        """The history entry of ``prompt_id`` once it has finished (success or error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, history = self.get(f"/history/{prompt_id}")
            entry = (history or {}).get(prompt_id) if status == 200 else None
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"]["completed"] or entry["status"].get("status_str") == "error"):
                return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(base: Path, *, extra_env: dict | None = None, startup_timeout: float = 180) -> ComfyServer:
    """Start ComfyUI on a free loopback port with the pack in ``base/custom_nodes/refvideo``."""
    comfy_dir, comfy_py = Path(os.environ["COMFYUI_DIR"]), os.environ["COMFYUI_PY"]
    for sub in ("custom_nodes", "input", "output", "user", "models/diffusers", "temp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "refvideo"
    if not link.exists():
        link.symlink_to(PACK_ROOT, target_is_directory=True)
    port = free_port()
    log_path = base / "comfyui.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "REFVIDEO_HOME": str(base / "refvideo_home"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(extra_env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [comfy_py, str(comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
             "--disable-auto-launch", "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
             "--base-directory", str(base), "--output-directory", str(base / "output"),
             "--input-directory", str(base / "input"), "--user-directory", str(base / "user"),
             "--temp-directory", str(base / "temp")],
            cwd=str(comfy_dir), stdout=log, stderr=subprocess.STDOUT, env=env)
    server = ComfyServer(process, f"http://127.0.0.1:{port}", base, log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited during start ({process.returncode}):\n{server.log()[-4000:]}")
        try:
            status, _ = server.get("/system_stats", timeout=2)
            if status == 200:
                return server
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.3)
    server.stop()
    raise TimeoutError(f"ComfyUI did not answer within {startup_timeout} s:\n{server.log()[-4000:]}")
