"""Context parallelism for Wan VACE: the plan matches the single-process forward, and a shot launched
with ``torchrun --nproc-per-node 2 -m refvideo run`` renders the same frames, written and charged once.

Multi-process tests run 2 CPU processes over gloo under torchrun (``--standalone`` picks a free
port); every one has a timeout and leaves nothing running.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refvideo.engine import ranks
from refvideo.engine.errors import InputError, RefVideoError
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import plan_render
from refvideo.headless.runner import execution_order
from refvideo.jobs import generation
from refvideo.models import context_parallel as cp
from refvideo.models import registry, tiny_random
from refvideo.models.spec import LoadOptions

TESTS = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
PROCESS_TIMEOUT = 600  # two processes on a loaded 2-core machine


def torchrun(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``args`` under torchrun on 2 CPU processes; on a timeout the whole group is killed."""
    proc = subprocess.Popen([*TORCHRUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", DIFFUSERS_VERBOSITY="error", **extra)
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: no need for the host name to resolve
    return env


# --------------------------------------------------------------------------- the plan, tensor by tensor


@pytest.fixture(scope="module")
def forwards(tmp_path_factory):
    out = tmp_path_factory.mktemp("cp_forwards")
    done = torchrun([str(TESTS / "context_parallel_worker.py"), str(out)], child_env(), TESTS)
    assert done.returncode == 0, done.stderr[-4000:]
    from safetensors.torch import load_file

    return load_file(str(out / "outputs.safetensors")), json.loads((out / "wrong_plan.json").read_text())


@pytest.mark.slow
def test_ulysses_over_two_processes_equals_the_single_process_forward_exactly(forwards):
    import torch

    results, _ = forwards
    assert results["ulysses"].shape == (1, 16, 3, 8, 14)
    assert torch.equal(results["ulysses"], results["single"])


@pytest.mark.slow
def test_ring_over_two_processes_matches_the_single_process_forward(forwards):
    results, _ = forwards
    assert (results["ring"] - results["single"]).abs().max().item() <= 1e-6


@pytest.mark.slow
def test_the_control_hints_matter_and_are_split_with_the_tokens(forwards):
    import torch

    results, _ = forwards
    assert (results["single"] - results["single_no_hints"]).abs().max().item() > 1e-2  # hints change the output
    assert torch.equal(results["ulysses_no_hints"], results["single_no_hints"])


@pytest.mark.slow
def test_a_plan_that_leaves_the_main_blocks_unsplit_fails_loudly(forwards):
    _, wrong = forwards
    assert wrong["error"] and "must match the size" in wrong["error"]


@pytest.fixture(scope="module")
def transformer():
    from diffusers import WanVACETransformer3DModel

    return WanVACETransformer3DModel(**tiny_random.TRANSFORMER).eval()


def test_the_plan_names_real_modules_of_the_vace_transformer(transformer):
    from diffusers.hooks.context_parallel import _get_submodule_by_name

    for name in cp.vace_plan():
        assert _get_submodule_by_name(transformer, name) is not None


def test_token_count_is_the_sequence_the_transformer_sees(transformer):
    import torch

    model = transformer
    arch = tiny_random.SPEC.arch
    for width, height, frames, refs in ((256, 144, 21, 1), (112, 64, 9, 0), (448, 256, 25, 2)):
        latent = torch.zeros(1, 16, (frames - 1) // 4 + 1 + refs, height // 8, width // 8)
        assert model.rope(latent)[0].shape[1] == cp.token_count(arch, width, height, frames, refs)


@pytest.mark.slow
def test_token_count_includes_each_pasted_reference_as_a_render_runs():
    from refvideo.engine.sizes import RenderPlan
    from refvideo.models.backend import RenderRequest

    backend = registry.resolve("tiny-random").backend()
    plan = RenderPlan(width=112, height=64, render_width=112, render_height=64, frames=9, fps=4.0, seconds=2.25,
                      requested_seconds=5.0, resolution="144p", aspect="16:9", strategy="native")
    seen: list[int] = []
    hook = backend.loaded.pipe.transformer.register_forward_pre_hook(
        lambda _m, _args, kwargs: seen.append(math.prod(kwargs["hidden_states"].shape[2:])), with_kwargs=True)
    try:
        refs = sampler_inputs("off").references
        backend.render(RenderRequest(references=refs, prompt="a walk", composed_prompt="a walk", negative_prompt="",
                                     plan=plan, seed=1, steps=1, guidance=1.0))
    finally:
        hook.remove()
    patches = seen[0] // 4  # latent positions (frames x height x width) / the 2 x 2 patch
    assert patches == cp.token_count(tiny_random.SPEC.arch, 112, 64, 9, 1) != cp.token_count(
        tiny_random.SPEC.arch, 112, 64, 9, 0)


# --------------------------------------------------------------------------- refusals before loading


def plan_480p(seconds=5.0):
    return plan_render("480p", "16:9", seconds, fps=tiny_random.SPEC.fps, rule=tiny_random.SPEC.frame_rule)


def test_a_token_count_that_does_not_split_is_refused_naming_one_that_does():
    arch, plan = tiny_random.SPEC.arch, plan_480p()
    others = [(f"duration {s:g} s", plan_480p(s)) for s in (5.5, 6.0, 6.5, 7.0)]
    with pytest.raises(InputError) as caught:
        cp.plan_layout("ring", arch, plan, 1, attention="sdpa-flash", degree=4, alternatives=others)
    assert caught.value.input == "parallel" and "does not split evenly over 4" in caught.value.message
    named = next(label for label, _ in others if label in caught.value.fix)
    suggested = dict(others)[named]
    assert cp.token_count(arch, suggested.render_width, suggested.render_height, suggested.frames, 1) % 4 == 0
    layout = cp.plan_layout("ring", arch, suggested, 1, attention="sdpa-flash", degree=4)
    assert layout.degree == 4 and layout.tokens == 4 * layout.tokens_per_rank


def test_ulysses_refuses_heads_that_do_not_divide_and_ring_refuses_attention_without_lse():
    arch, plan = tiny_random.SPEC.arch, plan_480p()
    with pytest.raises(InputError, match="2 attention heads over 4"):
        cp.plan_layout("ulysses", arch, plan, 2, attention="sdpa", degree=4)
    with pytest.raises(InputError) as caught:
        cp.plan_layout("ring", arch, plan, 2, attention="sdpa", degree=2)
    assert caught.value.input == "attention" and "sdpa-cudnn" in caught.value.fix
    assert cp.plan_layout("ulysses", arch, plan, 2, attention="sdpa", degree=2).tokens_per_rank > 0
    assert cp.plan_layout("off", arch, plan, 2, attention="sdpa", degree=8) == ranks.Layout()


def sampler_inputs(parallel: str, resolution: str = "480p") -> generation.SamplerInputs:
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    refs = ReferenceSet((Reference(image, np.ones((32, 48), np.float32), "character", "c"),))
    model = registry.resolve("tiny-random", LoadOptions(parallel=parallel))
    return generation.SamplerInputs(model=model, references=refs, prompt="a walk", steps=1, resolution=resolution,
                                    duration=5.0)


def test_parallel_in_a_single_process_renders_as_off_with_a_note():
    job = generation.prepare(sampler_inputs("ulysses"))
    assert job.handle.options.parallel == "off" and job.layout == ranks.Layout()
    assert any("single process rendered it as off" in w for w in job.warnings)


def test_under_torchrun_a_layout_that_does_not_split_is_refused_before_loading(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(cp, "enable", lambda *a, **k: pytest.fail("nothing may load"))
    with pytest.raises(InputError) as caught:
        generation.prepare(sampler_inputs("ring"))  # 'auto' attention on CPU is plain SDPA: no log-sum-exp
    assert caught.value.input == "attention"
    with pytest.raises(InputError) as caught:
        generation.prepare(sampler_inputs("ulysses"))  # 2 heads over 4 processes
    assert caught.value.input == "parallel"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="one GPU per process"):  # this machine has none
        generation.prepare(sampler_inputs("ulysses"))


# --------------------------------------------------------------------------- ranks


def test_alone_every_step_runs_here_and_this_is_the_main_rank(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (ranks.world_size(), ranks.rank(), ranks.is_main(), ranks.distributed()) == (1, 0, True, False)
    assert ranks.on_main(lambda: 7) == 7 and ranks.ensure_process_group() is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert (ranks.world_size(), ranks.rank(), ranks.is_main()) == (2, 1, False)


def test_an_error_shared_from_rank_0_keeps_its_type_input_and_fix():
    from refvideo.engine.credits.ledger import InsufficientCredits

    copy = ranks._rebuild(ranks._describe(InsufficientCredits("short by 840 credits.", input="budget", fix="Top up.")))
    assert type(copy) is InsufficientCredits and copy.exit_code == 2 and ranks.shared_from_main(copy)
    assert (copy.message, copy.input, copy.fix) == ("short by 840 credits.", "budget", "Top up.")
    for module, name in (("os", "error"), ("refvideo.engine.errors", "Interrupted")):  # not a RefVideo error type
        assert type(ranks._rebuild({"module": module, "type": name, "message": "m", "input": None, "fix": ""})) \
            is RefVideoError


def test_other_ranks_run_only_the_sampler_and_what_it_needs():
    from refvideo import NODE_CLASS_MAPPINGS

    workflow = json.loads(shot_workflow("off"))
    assert sorted(execution_order(workflow, NODE_CLASS_MAPPINGS)) == ["1", "2", "3", "4", "5"]
    others = execution_order(workflow, NODE_CLASS_MAPPINGS, every_rank_only=True)
    assert sorted(others) == ["1", "2", "3", "4"] and others[-1] == "4"  # the encoder (writes) is left out


# --------------------------------------------------------------------------- the product's launch path


def shot_workflow(parallel: str) -> str:
    """The shipped single-shot workflow on tiny-random: one reference, 144p, 2 steps, PNG frames (lossless)."""
    from refvideo.engine.paths import API_WORKFLOWS_DIR

    workflow = json.loads((API_WORKFLOWS_DIR / "single_shot.json").read_text())
    workflow["1"]["inputs"].update(image_2="none", image_3="none", background_1="off")
    workflow["2"]["inputs"].update(model="tiny-random", parallel=parallel)
    workflow["3"]["inputs"].update(resolution="144p")
    workflow["4"]["inputs"].update(resolution="144p", steps=2, seed=7)
    workflow["5"]["inputs"].update(format="png-sequence", filename_prefix="cp/shot", preset="ultrafast")
    return json.dumps(workflow)


def cli(args: list[str], env: dict[str, str], cwd: Path, *, launch: bool = False) -> subprocess.CompletedProcess:
    """``python -m refvideo ARGS``, or ``torchrun --nproc-per-node 2 -m refvideo ARGS`` with ``launch``."""
    if launch:
        return torchrun(["-m", "refvideo", *args], env, cwd)
    return subprocess.run([sys.executable, "-m", "refvideo", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          check=False, timeout=PROCESS_TIMEOUT)


def frames_of(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))])


@pytest.mark.slow
def test_torchrun_renders_the_same_frames_as_one_process_written_and_charged_once(tmp_path):
    # the CPU stand-in for the test only: diffusers divides by the accelerator count, 0 on CPU
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text("import torch\ntorch.accelerator.device_count = lambda: 1\n")
    results = {}
    for name, parallel, launch in (("alone", "off", False), ("two", "ulysses", True)):
        home, out = tmp_path / f"home_{name}", tmp_path / f"out_{name}"
        env = child_env(REFVIDEO_HOME=str(home), PYTHONPATH=os.pathsep.join(
            [str(patch), *filter(None, [os.environ.get("PYTHONPATH")])]))
        assert cli(["credits", "topup", "5000"], env, tmp_path).returncode == 0
        workflow = tmp_path / f"{name}.json"
        workflow.write_text(shot_workflow(parallel))
        done = cli(["run", str(workflow), "--output-dir", str(out), "--json"], env, tmp_path, launch=launch)
        assert done.returncode == 0, done.stderr[-4000:]
        payload = json.loads(done.stdout)  # one JSON object: only rank 0 printed
        assert payload["ok"] is True
        history = json.loads(cli(["credits", "history", "--json"], env, tmp_path).stdout)["entries"]
        balance = json.loads(cli(["credits", "balance", "--json"], env, tmp_path).stdout)["balance"]
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        results[name] = (history, balance, written, next(out.rglob("frame_00001.png")).parent)

    (history1, balance1, written1, folder1), (history2, balance2, written2, folder2) = results["alone"], results["two"]
    assert balance2 == balance1 < 5000 and len(history2) == len(history1)  # charged once, as one process is
    assert written2 == written1 and len([f for f in written2 if f.endswith(".png")]) == 21  # one set of files
    assert np.array_equal(frames_of(folder1), frames_of(folder2))
    infos = [json.loads(json.loads((f / "metadata.json").read_text())["refvideo"]) for f in (folder1, folder2)]
    layouts = [info["parallel"] for info in infos]
    assert layouts[0]["degree"] == 1 and (layouts[1]["mode"], layouts[1]["degree"]) == ("ulysses", 2)
    assert layouts[1]["tokens"] == 2 * layouts[1]["tokens_per_rank"] > 0


@pytest.mark.slow
def test_a_refusal_on_rank_0_stops_every_rank_and_is_reported_once(tmp_path):
    out = tmp_path / "out"
    workflow = tmp_path / "shot.json"
    workflow.write_text(shot_workflow("ulysses"))
    env = child_env(REFVIDEO_HOME=str(tmp_path / "home"))  # a new account: 0 credits
    done = cli(["run", str(workflow), "--output-dir", str(out), "--json"], env, tmp_path, launch=True)
    assert done.returncode != 0
    payload = json.loads(done.stdout)  # one JSON object: rank 1 stopped with the shared refusal, silently
    assert payload["ok"] is False and payload["errors"][0]["type"] == "InsufficientCredits"
    assert "rank 1" not in done.stderr and not out.exists()
