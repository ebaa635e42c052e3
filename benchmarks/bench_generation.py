"""Generation speed and memory: RefVideo's Wan VACE path against a plain ``WanVACEPipeline(...)`` call.

Builds the published Wan2.1-VACE-1.3B or -14B architecture with random weights directly on the
GPU (no download: speed and memory do not depend on the weights' values), then renders the
same request (one reference, 81 frames, guidance 5, bf16) as

- ``plain``: ``WanVACEPipeline(...)(...)`` with diffusers' defaults, the peer every ratio is against;
- RefVideo's backend with one option changed at a time (attention backend, torch.compile, CFG
  batching, offload modes, and compile together with group or sequential offload, which
  compiles the blocks with graph breaks at the offload hooks), its ``default`` fast path (the
  loader's defaults), and the ``distill-4step`` preset (4 steps, no CFG: what a
  step-distillation LoRA runs). Every variant re-places the one loaded pipeline in process,
  as the loader does between renders (offload hooks removed, compiled blocks undone);
- the transformer's weights stored as ComfyUI's files hold them: ``fp8`` (``weight_dtype``
  ``fp8_e4m3fn``), ``gguf-q8_0`` and ``gguf-q4_0`` (diffusers' GGUF layers), each against
  ``plain`` and ``sdpa`` in bf16 (seconds per step and peak VRAM).

Per variant it prints seconds per step (the mean of steps 2..n, so compile warm-up and first-call
costs stay out), the fixed cost (text encoding, VAE encode/decode), projected seconds per clip,
peak VRAM, model FLOPs utilisation against the GPU's dense bf16 peak, and the ratios against
``plain`` at equal steps, size and precision; the distilled preset is also compared per clip
with the plain 50-step default. ``--memory-cap-gb 24`` caps this process's GPU memory
(``torch.cuda.set_per_process_memory_fraction``) to check the 14B-at-720p-in-24-GB target.

Examples (one command each stays within 10 minutes on an H100)::

    python benchmarks/bench_generation.py --arch 1.3B --resolution 480p --steps 3
    python benchmarks/bench_generation.py --arch 14B --resolution 720p --steps 2 --variants plain,default,distill-4step
    python benchmarks/bench_generation.py --arch 14B --resolution 720p --steps 2 --variants group_offload \\
        --memory-cap-gb 24
    python benchmarks/bench_generation.py --arch 14B --resolution 720p --steps 2 \\
        --variants group_offload,compile+group_offload --memory-cap-gb 24
    python benchmarks/bench_generation.py --arch 14B --resolution 720p --steps 2 \\
        --variants plain,sdpa,fp8,gguf-q8_0,gguf-q4_0
    python benchmarks/bench_generation.py --tiny     # CPU check of this script with the tiny random pipeline

``--context-parallel ulysses`` (or ``ring``) measures one shot spread over several GPUs instead:
for each degree of ``--degrees`` (default 1,2,4,8) it launches ``torchrun --nproc-per-node D`` on
this script, renders the same request with RefVideo's backend and the loader's ``parallel`` set
(degree 1: parallel off, the peer), and prints seconds per step, the speed-up over degree 1 and
the scaling efficiency (speed-up / degree). Degrees above the GPU count are listed as skipped::

    python benchmarks/bench_generation.py --arch 14B --resolution 720p --steps 3 --context-parallel ulysses
    python benchmarks/bench_generation.py --tiny --context-parallel ulysses   # CPU: checks that it runs
On a CPU (``--tiny``) the offload variants run with the CPU as onload device (the hooks are real
and move nothing) and compile uses the ``eager`` backend (``--compile-backend``), which checks the
graph capture without a C++ toolchain.

Variants that cannot run here (GPU-only options on a CPU, a missing attention package) are
listed as skipped with the reason. ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script from a checkout: import the pack as `refvideo`
    from pack_path import import_pack

    import_pack()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refvideo.engine import host, ranks  # noqa: E402
from refvideo.engine.memory_plan import GIB, decide, tokens  # noqa: E402
from refvideo.engine.references.reference import Reference, ReferenceSet  # noqa: E402
from refvideo.engine.sizes import WAN_FRAMES, plan_render  # noqa: E402
from refvideo.models import context_parallel, placement, tiny_random, wan_vace  # noqa: E402
from refvideo.models import diffusers_loading as loading  # noqa: E402
from refvideo.models.backend import RenderRequest  # noqa: E402
from refvideo.models.spec import LoadOptions, ModelSpec, sampling_preset  # noqa: E402

PLAIN_DEFAULT_STEPS = 50  # diffusers' num_inference_steps default
GUIDANCE = 5.0
PROMPT = "A woman in a red coat turns to face the camera on a rainy harbour at dusk, slow dolly in"
NEGATIVE = "blurry, low quality, static"
H100_BF16_PEAK_TFLOPS = 989.0
# Applied in this order (compile and group/sequential offload cannot be undone in-process).
VARIANTS: dict[str, dict] = {
    "plain": {},
    "sdpa": dict(attention="sdpa", compile="off", cfg_batching="off"),
    "sdpa-cudnn": dict(attention="sdpa-cudnn", compile="off", cfg_batching="off", gpu=True),
    "sdpa-flash": dict(attention="sdpa-flash", compile="off", cfg_batching="off", gpu=True),
    "flash-attn": dict(attention="flash-attn", compile="off", cfg_batching="off", gpu=True),
    "sage": dict(attention="sage", compile="off", cfg_batching="off", gpu=True),
    "cfg-batch": dict(attention="sdpa", compile="off", cfg_batching="on"),
    # the transformer's weights in another storage (as ComfyUI's files hold them), else as "sdpa"
    "fp8": dict(attention="sdpa", compile="off", cfg_batching="off", weights="fp8_e4m3fn"),
    "gguf-q8_0": dict(attention="sdpa", compile="off", cfg_batching="off", weights="Q8_0"),
    "gguf-q4_0": dict(attention="sdpa", compile="off", cfg_batching="off", weights="Q4_0"),
    "model_offload": dict(attention="auto", compile="off", cfg_batching="off", memory_mode="model_offload", gpu=True),
    "compile": dict(attention="sdpa", compile="blocks", cfg_batching="off"),
    "default": dict(),  # the loader's defaults: attention auto, compile auto, CFG batching auto, memory auto
    "distill-4step": dict(preset="distill-4step"),
    "group_offload": dict(attention="auto", compile="off", cfg_batching="off", memory_mode="group_offload"),
    "compile+group_offload": dict(attention="auto", compile="blocks", cfg_batching="off",
                                  memory_mode="group_offload"),
    "sequential_offload": dict(attention="auto", compile="off", cfg_batching="off",
                               memory_mode="sequential_offload"),
    "compile+sequential_offload": dict(attention="auto", compile="blocks", cfg_batching="off",
                                       memory_mode="sequential_offload"),
}
DEFAULT_GPU_VARIANTS = "plain,sdpa,sdpa-cudnn,sdpa-flash,flash-attn,sage,cfg-batch,model_offload,compile,default," \
                       "distill-4step"
DEFAULT_TINY_VARIANTS = "plain,sdpa,cfg-batch,fp8,gguf-q8_0,gguf-q4_0,default,distill-4step,compile,model_offload," \
                        "group_offload,compile+group_offload"
CP_ATTENTION = {"ulysses": "sdpa", "ring": "sdpa-cudnn"}  # ring needs a kernel that returns its log-sum-exp


@dataclass
class Measure:
    """One variant's figures."""

    name: str
    steps: int = 0
    forwards_per_step: int = 0
    wall_s: float = 0.0
    per_step_s: float = 0.0
    peak_vram_gib: float | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fixed_s(self) -> float:
        return max(self.wall_s - self.steps * self.per_step_s, 0.0)

    def clip_s(self, steps: int) -> float:
        """Projected seconds for a whole clip at ``steps`` steps."""
        return self.fixed_s + steps * self.per_step_s


def forward_flops(config: dict, n_tokens: int, text_tokens: int = 512) -> float:
    """FLOPs of one VACE transformer forward (main and control blocks; matmuls and attention)."""
    d = config["num_attention_heads"] * config["attention_head_dim"]
    f, t, c = config["ffn_dim"], n_tokens, text_tokens
    per_block = (8 * t * d * d + 4 * t * t * d  # self-attention: q/k/v/o projections, scores and values
                 + 4 * t * d * d + 4 * c * d * d + 4 * t * c * d  # cross-attention to the text
                 + 4 * t * d * f)  # feed-forward
    return (config["num_layers"] + len(config["vace_layers"])) * per_block


class Timer:
    """Step timestamps (synchronised on CUDA) for a run."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[float] = []

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def step(self, *_args) -> None:
        self.stamps.append(self.now())

    def per_step(self, wall: float) -> float:
        if len(self.stamps) > 1:
            return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)
        return wall


def reference_image(size: int = 384) -> Reference:
    """A synthetic character reference: a coloured figure on a light backdrop, matted."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.9 - 0.5 * y, 0.3 + 0.4 * x, 0.35 + 0.3 * y * x], axis=-1).astype(np.float32)
    mask = (((x - 0.5) / 0.22) ** 2 + ((y - 0.55) / 0.4) ** 2 < 1).astype(np.float32)
    return Reference(image, mask, "character", "the woman in the red coat")


def build(args: argparse.Namespace, device: torch.device):
    """The pipeline (shared by every variant), its spec and the render plan."""
    from diffusers import UniPCMultistepScheduler, WanVACEPipeline
    from transformers import T5Tokenizer

    if args.tiny:
        pipe = tiny_random.build_pipeline()
        spec, config = tiny_random.SPEC, tiny_random.TRANSFORMER
        plan = plan_render(args.resolution, args.aspect, args.seconds, fps=spec.fps, rule=WAN_FRAMES)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device), spec, config, plan
    name = f"Wan2.1-VACE-{args.arch}"
    config = wan_vace.REFERENCE_ARCHITECTURES[name]
    parts = wan_vace.build_components(name, device=device, dtype=torch.bfloat16)
    shift = 5.0 if args.resolution in ("720p", "1080p") else 3.0
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)
    tokenizer = T5Tokenizer(vocab=tiny_random._vocab(), extra_ids=0)  # ids are in range; padding makes 512 tokens
    pipe = WanVACEPipeline(tokenizer=tokenizer, scheduler=scheduler, **parts)
    pipe.set_progress_bar_config(disable=True)
    facts = wan_vace.reference_facts(name)
    spec = ModelSpec(name=name, kind=wan_vace.PIPELINE_CLASS, fps=wan_vace.WAN_FPS, family="wan",
                     native_resolution="720p" if args.arch == "14B" else "480p", arch=facts)
    plan = plan_render(args.resolution, args.aspect, args.seconds, fps=spec.fps, rule=WAN_FRAMES)
    return pipe, spec, config, plan


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / GIB


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_plain(pipe, plan, refs, steps: int, device: torch.device) -> Measure:
    """The peer: the pipeline called directly with diffusers' defaults."""
    from refvideo.models.wan_vace import reference_image as fit

    pipe.to(device)
    timer = Timer(device)
    reset_peak(device)
    started = timer.now()
    pipe(prompt=PROMPT, negative_prompt=NEGATIVE, reference_images=[fit(refs.references[0], 512, 512)],
         height=plan.render_height, width=plan.render_width, num_frames=plan.frames, num_inference_steps=steps,
         guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(0), output_type="np",
         callback_on_step_end=lambda p, i, t, kw: (timer.step(), kw)[1])
    wall = timer.now() - started
    return Measure("plain", steps, 2, wall, timer.per_step(wall), peak_gib(device))


def loaded_pipeline(pipe, device: torch.device, parallel: str) -> loading.LoadedPipeline:
    """The built pipeline as the loader hands it over: frozen, context parallelism's hooks in, not yet placed."""
    loading.freeze(pipe)
    context_parallel.enable_pipeline(pipe, parallel)  # a no-op unless launched over several processes
    return loading.LoadedPipeline(pipe, device, "bf16" if device.type == "cuda" else "fp32",
                                  info=placement.describe(device))


def q8_0_blocks(weight: torch.Tensor) -> torch.Tensor:
    """GGML Q8_0 blocks of a ``[rows, cols]`` weight (per 32 values: fp16 scale, 32 int8), as uint8 rows."""
    b = weight.float().reshape(-1, 32)
    d = b.abs().amax(1, keepdim=True) / 127
    q = torch.where(d > 0, b / d.clamp(min=1e-30), 0).round().clamp(-127, 127).to(torch.int8)
    return torch.cat([d.half().view(torch.uint8), q.view(torch.uint8)], 1).reshape(weight.shape[0], -1)


def q4_0_blocks(weight: torch.Tensor) -> torch.Tensor:
    """GGML Q4_0 blocks (per 32 values: fp16 scale, 16 bytes of 4-bit values), as uint8 rows."""
    b = weight.float().reshape(-1, 32)
    peak = b.gather(1, b.abs().argmax(1, keepdim=True))
    d = peak / -8
    q = torch.where(d != 0, b / torch.where(d != 0, d, 1) + 8.5, 8).trunc().clamp(0, 15).to(torch.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return torch.cat([d.half().view(torch.uint8), packed], 1).reshape(weight.shape[0], -1)


def transformer_in(kind: str, original, device: torch.device):
    """The pipeline's transformer with its weights stored as ``kind`` (fp8 or a GGUF type), on ``device``.

    fp8: RefVideo's ``weight_dtype`` path (layerwise casting). GGUF: every linear weight whose rows
    split into 32-value blocks quantized, loaded through ``from_single_file`` with diffusers' GGUF
    quantizer, as a ``.gguf`` file is.
    """
    import copy
    import types

    from diffusers import GGUFQuantizationConfig, WanVACETransformer3DModel
    from diffusers.quantizers.gguf.utils import GGUFParameter
    from gguf import GGMLQuantizationType

    from refvideo.models import fp8_storage
    from refvideo.models.single_file_loading import config_folder

    compute = original.dtype
    if kind == "fp8_e4m3fn":
        variant = copy.deepcopy(original).to(device)
        fp8_storage.store_fp8(types.SimpleNamespace(transformer=variant), kind, compute)
        return variant
    make = {"Q8_0": q8_0_blocks, "Q4_0": q4_0_blocks}[kind]
    linears = {f"{n}.weight" for n, m in original.named_modules() if isinstance(m, torch.nn.Linear)}
    state = {}
    for key, value in original.state_dict().items():
        if key in linears and value.shape[1] % 32 == 0:
            state[key] = GGUFParameter(make(value.to(device)).cpu(), quant_type=getattr(GGMLQuantizationType, kind))
        else:
            state[key] = value.detach().cpu()
    with config_folder({k: v for k, v in original.config.items() if not k.startswith("_")}) as config:
        variant = WanVACETransformer3DModel.from_single_file(
            state, config=config, torch_dtype=compute, local_files_only=True,
            quantization_config=GGUFQuantizationConfig(compute_dtype=compute))
    return variant.eval().to(device)


def run_variant(name: str, loaded: loading.LoadedPipeline, spec, plan, refs, steps: int, device: torch.device,
                free: int, compile_backend: str) -> Measure:
    """RefVideo's backend with the variant's options and weight storage, on the one loaded pipeline."""
    weights = VARIANTS[name].get("weights")
    if weights is None:
        return run_options(name, loaded, spec, plan, refs, steps, device, free, compile_backend)
    pipe = loaded.pipe
    unplaced(loaded)
    original = pipe.transformer
    reset_peak(device)
    pipe.register_modules(transformer=transformer_in(weights, original, device))
    try:
        measure = run_options(name, loaded, spec, plan, refs, steps, device, free, compile_backend)
        measure.notes.append(f"weights={weights}")
        return measure
    finally:
        unplaced(loaded)
        pipe.register_modules(transformer=original)
        reset_peak(device)


def unplaced(loaded: loading.LoadedPipeline) -> None:
    """Compiled blocks and offload hooks undone, weights on the CPU: the next variant places the pipeline afresh."""
    placement.uncompile(loaded.pipe)
    placement.unplace(loaded.pipe)
    loaded.placement = None


def run_options(name: str, loaded: loading.LoadedPipeline, spec, plan, refs, steps: int, device: torch.device,
                free: int, compile_backend: str) -> Measure:
    """RefVideo's backend with the variant's options, re-placing the one loaded pipeline as the loader does."""
    overrides = {k: v for k, v in VARIANTS[name].items() if k not in ("gpu", "weights")}
    options = LoadOptions(**overrides)
    chosen = sampling_preset(options.preset)
    steps = chosen.steps or steps
    guidance = chosen.guidance or GUIDANCE
    decision = decide(spec.arch, requested_mode=options.memory_mode, cfg_batching=options.cfg_batching, free=free,
                      accelerator=device.type != "cpu", width=plan.render_width, height=plan.render_height,
                      frames=plan.frames, references=1, dtype=loaded.dtype, vae_tiling=options.vae_tiling,
                      guidance=guidance)
    # on a CPU the memory plan always says "none"; the script still runs the asked-for hooks there
    mode = options.memory_mode if device.type == "cpu" and options.memory_mode != "auto" else decision.mode
    options = options.with_(memory_mode=mode, cfg_batching="on" if decision.cfg_batched else "off")
    loading.configure(loaded, dataclasses.replace(options.placement(), compile_backend=compile_backend))
    backend = wan_vace.WanVaceBackend(loaded, spec, options)
    request = dict(references=refs, prompt=PROMPT, composed_prompt=PROMPT, negative_prompt=NEGATIVE, plan=plan,
                   seed=0, steps=steps, guidance=guidance)
    if loaded.compile != "off":  # warm up the compiled blocks for these shapes (not timed)
        backend.render(RenderRequest(**{**request, "steps": 2}))
    timer = Timer(device)
    reset_peak(device)
    started = timer.now()
    backend.render(RenderRequest(**request, on_step=timer.step))
    wall = timer.now() - started
    notes = [f"attention={loaded.attention}", f"compile={loaded.compile}", f"memory={loaded.memory_mode}",
             f"cfg_batched={options.cfg_batching == 'on'}"]
    return Measure(name, steps, 1 if guidance <= 1.0 else 2, wall, timer.per_step(wall), peak_gib(device),
                   notes=notes)


def skip_reason(name: str, device: torch.device) -> str | None:
    import importlib.util

    if VARIANTS[name].get("gpu") and device.type != "cuda":
        return "needs a CUDA GPU"
    if VARIANTS[name].get("compile") not in (None, "off") and device.type == "cuda":
        try:
            placement.choose_compile(VARIANTS[name]["compile"], VARIANTS[name].get("memory_mode", "auto"),
                                     placement.describe(device))
        except Exception as exc:  # noqa: BLE001 - reported as the reason
            return str(exc)
    package = {"flash-attn": "flash_attn", "sage": "sageattention"}.get(name)
    if package and importlib.util.find_spec(package) is None:
        return f"the {package} package is not installed"
    return None


def report(measures: list[Measure], args, config: dict, plan, device: torch.device) -> dict:
    base = next((m for m in measures if m.name == "plain" and not m.skipped), None)
    n_tokens = tokens(wan_vace.reference_facts(f"Wan2.1-VACE-{args.arch}"), plan.render_width, plan.render_height,
                      plan.frames, 1) if not args.tiny else None
    flops = forward_flops(config, n_tokens) if n_tokens else None
    peak = args.peak_tflops * 1e12
    rows = []
    for m in measures:
        row = {"variant": m.name, "skipped": m.skipped}
        if not m.skipped:
            row.update(steps=m.steps, per_step_s=round(m.per_step_s, 4), fixed_s=round(m.fixed_s, 3),
                       wall_s=round(m.wall_s, 3), peak_vram_gib=None if m.peak_vram_gib is None
                       else round(m.peak_vram_gib, 2), notes=m.notes)
            row["clip_s_at_own_steps"] = round(m.clip_s(m.steps if m.name == "distill-4step" else
                                                        PLAIN_DEFAULT_STEPS), 2)
            if flops and device.type == "cuda":
                row["mfu"] = round(m.forwards_per_step * flops / m.per_step_s / peak, 4)
            if base is not None:
                same = base.per_step_s / m.per_step_s
                row["per_step_speedup_vs_plain"] = round(same, 3)
                row["clip_speedup_vs_plain_50_steps"] = round(base.clip_s(PLAIN_DEFAULT_STEPS) /
                                                              row["clip_s_at_own_steps"], 3)
        rows.append(row)
    return {"arch": "tiny-random" if args.tiny else f"Wan2.1-VACE-{args.arch}", "device": device_name(device),
            "resolution": args.resolution, "render": f"{plan.render_width}x{plan.render_height}",
            "frames": plan.frames, "tokens": n_tokens, "forward_pflop": flops / 1e15 if flops else None,
            "peak_tflops": args.peak_tflops, "memory_cap_gb": args.memory_cap_gb, "results": rows}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def print_table(result: dict) -> None:
    print(f"\n{result['arch']} on {result['device']}: {result['render']}, {result['frames']} frames"
          + (f", {result['tokens']} tokens, {result['forward_pflop']:.2f} PFLOP per forward"
             if result["tokens"] else "")
          + (f", memory cap {result['memory_cap_gb']} GB" if result["memory_cap_gb"] else ""))
    head = f"{'variant':<19}{'steps':>6}{'s/step':>9}{'fixed s':>9}{'clip s':>9}{'peak GiB':>10}{'MFU':>7}" \
           f"{'x step':>8}{'x clip':>8}"
    print(head)
    for r in result["results"]:
        if r["skipped"]:
            print(f"{r['variant']:<19}skipped: {r['skipped']}")
            continue
        peak = "-" if r["peak_vram_gib"] is None else f"{r['peak_vram_gib']:.2f}"
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
        print(f"{r['variant']:<19}{r['steps']:>6}{r['per_step_s']:>9.3f}{r['fixed_s']:>9.2f}"
              f"{r['clip_s_at_own_steps']:>9.1f}{peak:>10}{mfu:>7}{r.get('per_step_speedup_vs_plain', 0):>8.2f}"
              f"{r.get('clip_speedup_vs_plain_50_steps', 0):>8.2f}")
    print("x step: seconds per step of plain / of the variant (same steps, size, precision). "
          f"x clip: plain at {PLAIN_DEFAULT_STEPS} steps / the variant per clip ({PLAIN_DEFAULT_STEPS} steps, "
          "distill-4step at 4).")


def accelerator_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_degrees(args: argparse.Namespace) -> int:
    """``--context-parallel``: one torchrun per degree, then the scaling table (see the module docstring)."""
    import subprocess
    import tempfile

    gpus = accelerator_count()
    rows = []
    worker_argv = ["--arch", args.arch, "--resolution", args.resolution, "--aspect", args.aspect, "--seconds",
                   str(args.seconds), "--steps", str(args.steps), "--context-parallel", args.context_parallel,
                   *(["--tiny"] if args.tiny else [])]
    for degree in [int(d) for d in args.degrees.split(",")]:
        row = {"degree": degree, "mode": "off" if degree == 1 else args.context_parallel}
        if degree > max(gpus, 1):
            row["skipped"] = f"needs {degree} GPUs (this machine has {gpus})"
            rows.append(row)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "worker.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(degree),
                       str(Path(__file__).resolve()), *worker_argv, "--cp-worker", str(out)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if out.is_file():
                row.update(json.loads(out.read_text()))
            else:
                row["skipped"] = f"failed: torchrun exited with {done.returncode}"
        rows.append(row)
        print(f"done: degree {degree}", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["degree"] == 1 and "per_step_s" in r), None)
    for r in rows:
        if base is not None and "per_step_s" in r:
            r["speedup_vs_degree_1"] = round(base["per_step_s"] / r["per_step_s"], 3)
            r["scaling_efficiency"] = round(r["speedup_vs_degree_1"] / r["degree"], 3)
    result = {"arch": "tiny-random" if args.tiny else f"Wan2.1-VACE-{args.arch}", "resolution": args.resolution,
              "device": device_name(torch.device("cuda")) if gpus else "cpu", "gpus": gpus,
              "context_parallel": args.context_parallel, "steps": args.steps, "results": rows}
    print(f"\n{result['arch']} {args.resolution}, parallel {args.context_parallel}, on {gpus} x {result['device']}")
    print(f"{'degree':>6}{'mode':>9}{'s/step':>9}{'x step':>8}{'efficiency':>12}")
    for r in rows:
        if "per_step_s" not in r:
            print(f"{r['degree']:>6}{r['mode']:>9}  skipped: {r['skipped']}")
            continue
        print(f"{r['degree']:>6}{r['mode']:>9}{r['per_step_s']:>9.3f}{r.get('speedup_vs_degree_1', 0):>8.2f}"
              f"{r.get('scaling_efficiency', 0):>12.1%}")
    print("x step: seconds per step at degree 1 (parallel off) / at this degree; efficiency: x step / degree.")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def cp_worker(args: argparse.Namespace, out: Path) -> int:
    """One rank under torchrun: render with ``parallel`` set, rank 0 writes its seconds per step."""
    ranks.ensure_process_group()
    device = host.torch_device()  # each rank's own GPU (the CPU without one: degree 1 only)
    pipe, spec, _config, plan = build(args, device)
    refs = ReferenceSet((reference_image(),))
    mode = args.context_parallel if ranks.distributed() else "off"
    attention = CP_ATTENTION[args.context_parallel]  # degree 1 runs the same kernel: like for like
    name = f"context-parallel-{mode}"
    VARIANTS[name] = {"attention": attention, "compile": "off", "cfg_batching": "off", "parallel": mode}
    try:
        context_parallel.plan_layout(mode, spec.arch, plan, 1, attention=attention)  # refuses a split that cannot be
        free = loading.free_memory(device) if device.type != "cpu" else 64 * GIB
        m = run_variant(name, loaded_pipeline(pipe, device, mode), spec, plan, refs, args.steps, device, free,
                        "inductor")
        figures = {"per_step_s": round(m.per_step_s, 4), "wall_s": round(m.wall_s, 3),
                   "peak_vram_gib": None if m.peak_vram_gib is None else round(m.peak_vram_gib, 2), "notes": m.notes}
    except Exception as exc:  # noqa: BLE001 - reported as this degree's row
        figures = {"skipped": f"failed: {type(exc).__name__}: {exc}"[:300]}
    if ranks.is_main():
        out.write_text(json.dumps(figures))
    ranks.close_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("1.3B", "14B"), default="1.3B")
    parser.add_argument("--resolution", default=None, help="480p for 1.3B, 720p for 14B unless given")
    parser.add_argument("--aspect", default="16:9")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed run (per-step time is what matters)")
    parser.add_argument("--variants", default=None, help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--memory-cap-gb", type=float, default=None, help="cap this process's GPU memory")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS,
                        help="the GPU's dense bf16 peak for MFU (H100/H200: 989)")
    parser.add_argument("--tiny", action="store_true", help="CPU check with the tiny random pipeline")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default: inductor on a GPU, eager on a CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--context-parallel", choices=("ulysses", "ring"), default=None,
                        help="measure one shot over 1..N GPUs (one torchrun per degree) instead of the variants")
    parser.add_argument("--degrees", default="1,2,4,8", help="with --context-parallel: the process counts")
    parser.add_argument("--cp-worker", type=Path, default=None, help=argparse.SUPPRESS)  # one rank, internal
    args = parser.parse_args(argv)
    args.resolution = args.resolution or ("144p" if args.tiny else "720p" if args.arch == "14B" else "480p")
    if args.tiny:
        args.aspect = "1:1"
        torch.set_num_threads(1)
    host.set_progress_bars(False)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    if args.context_parallel and args.cp_worker:
        return cp_worker(args, args.cp_worker)
    if args.context_parallel:
        return run_degrees(args)
    device = torch.device("cpu") if args.tiny else host.torch_device()
    if device.type == "cuda" and args.memory_cap_gb:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(args.memory_cap_gb * 1e9 / total, 1.0), device)
    names = (args.variants or (DEFAULT_TINY_VARIANTS if args.tiny else DEFAULT_GPU_VARIANTS)).split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    names = [n for n in VARIANTS if n in names]  # the safe order
    pipe, spec, config, plan = build(args, device)
    compile_backend = args.compile_backend or ("eager" if device.type == "cpu" else "inductor")
    loaded = loaded_pipeline(pipe, device, "off")
    refs = ReferenceSet((reference_image(),))
    free = int(args.memory_cap_gb * 1e9) if args.memory_cap_gb else (
        loading.free_memory(device) if device.type != "cpu" else 64 * GIB)
    measures: list[Measure] = []
    for name in names:
        reason = skip_reason(name, device)
        if reason:
            measures.append(Measure(name, skipped=reason))
            continue
        try:
            if name == "plain":
                measures.append(run_plain(pipe, plan, refs, args.steps, device))
            else:
                measures.append(run_variant(name, loaded, spec, plan, refs, args.steps, device, free,
                                            compile_backend))
        except torch.cuda.OutOfMemoryError as exc:
            measures.append(Measure(name, skipped=f"out of memory: {str(exc).splitlines()[0]}"))
            reset_peak(device)
        except Exception as exc:  # noqa: BLE001 - one failing option must not hide the others' figures
            measures.append(Measure(name, skipped=f"failed: {type(exc).__name__}: {exc}"[:300]))
        print(f"done: {name}", file=sys.stderr, flush=True)
    result = report(measures, args, config, plan, device)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
