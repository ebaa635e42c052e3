"""Loading ComfyUI's own Wan VACE files against a diffusers folder: load time and resident bytes (CPU).

Writes one small Wan VACE pipeline (random weights) as a diffusers folder and as the single files
ComfyUI users hold — transformer as plain safetensors, as ``*_fp8_e4m3fn_scaled`` and as GGUF
(Q8_0 with one Q4_K tensor), UMT5 with its ``spiece_model``, the Wan 2.1 VAE — into a temporary
models tree, then loads each through RefVideo's real loader path (``registry.resolve(...).backend()``)
several times and prints the median load time and the bytes the loaded pipeline holds (all
components and the transformer alone), with ratios against the diffusers folder in the same run.
``weight_dtype fp8_e4m3fn`` is measured on the plain file too.

``--memory-table`` prints instead the memory plan's estimate for the published architectures
in each weight format (the docs/models.md table).

Examples::

    python benchmarks/bench_model_files.py                  # width 512, 6 layers: about a minute on 2 cores
    python benchmarks/bench_model_files.py --width 64 --layers 3 --repeats 2   # a quick check
    python benchmarks/bench_model_files.py --memory-table
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
if __package__ in (None, ""):  # run as a script from a checkout: import the pack as `refvideo`
    from pack_path import import_pack

    import_pack()

from refvideo.engine.memory_plan import GIB, MODE_ORDER, estimate  # noqa: E402

FOLDER = "Wan-bench-folder"
# Bits per weight of the GGUF types QuantStack publishes for Wan (block bytes x 8 / block size;
# the _K_M mixes are their averages over a Wan 14B file).
GGUF_BITS = {"Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.7, "Q4_K_M": 4.9, "Q3_K_M": 3.9}


def write_tree(root: Path, width: int, layers: int) -> dict[str, tuple[str, dict]]:
    """The pipeline as a folder and as ComfyUI files; ``{label: (model name, loader options)}``."""
    import comfy_model_files as C

    tokenizer = root / "tokenizer"
    tokenizer.mkdir(parents=True)
    (tokenizer / "spiece.model").write_bytes(C.sentencepiece_model())
    models = root / "models"
    config = dict(attention_head_dim=width // 2, ffn_dim=max(256, 4 * width // 256 * 256), num_layers=layers,
                  vace_layers=list(range(0, layers, 2)))
    pipe = C.build_pipeline(tokenizer, transformer=config)
    pipe.save_pretrained(models / FOLDER, safe_serialization=True)
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (models / sub).mkdir()
    C.write_transformer(models / "diffusion_models" / "wan_bench_fp16.safetensors", pipe.transformer)
    C.write_scaled_fp8(models / "diffusion_models" / "wan_bench_fp8_e4m3fn_scaled.safetensors", pipe.transformer)
    C.write_gguf(models / "diffusion_models" / "wan_bench-Q8_0.gguf", pipe.transformer)
    C.write_umt5(models / "text_encoders" / "umt5_xxl_fp16.safetensors", pipe.text_encoder,
                 (tokenizer / "spiece.model").read_bytes())
    C.write_vae(models / "vae" / "wan_2.1_vae.safetensors", pipe.vae)
    return {
        "diffusers folder": (FOLDER, {}),
        "single file safetensors": ("diffusion_models/wan_bench_fp16.safetensors", {}),
        "single file + weight_dtype fp8": ("diffusion_models/wan_bench_fp16.safetensors",
                                           {"weight_dtype": "fp8_e4m3fn"}),
        "fp8_e4m3fn_scaled": ("diffusion_models/wan_bench_fp8_e4m3fn_scaled.safetensors", {}),
        "GGUF Q8_0 (+Q4_K)": ("diffusion_models/wan_bench-Q8_0.gguf", {}),
    }


def measure(name: str, options: dict, repeats: int) -> dict:
    from refvideo.models import diffusers_loading, registry
    from refvideo.models.spec import LoadOptions

    times, loaded = [], None
    for _ in range(repeats):
        diffusers_loading.CACHE.release()
        started = time.perf_counter()
        loaded = registry.resolve(name, LoadOptions(dtype="fp32", **options)).backend().loaded
        times.append(time.perf_counter() - started)
    transformer = sum(p.numel() * p.element_size() for p in loaded.pipe.transformer.parameters())
    return {"load_s": statistics.median(times), "resident": loaded.resident_bytes(), "transformer": transformer}


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        entries = write_tree(Path(tmp), args.width, args.layers)
        os.environ["REFVIDEO_MODELS"] = str(Path(tmp) / "models")
        os.environ.setdefault("REFVIDEO_HOME", str(Path(tmp) / "home"))
        figures = {label: measure(name, options, args.repeats) for label, (name, options) in entries.items()}
    base = figures["diffusers folder"]
    print(f"width {args.width}, {args.layers} layers; median of {args.repeats} loads; fp32 compute on the CPU")
    print(f"{'format':32} {'load s':>8} {'x folder':>9} {'resident MiB':>13} {'transformer MiB':>16} {'x folder':>9}")
    for label, f in figures.items():
        print(f"{label:32} {f['load_s']:8.3f} {f['load_s'] / base['load_s']:9.2f} {f['resident'] / 2**20:13.1f} "
              f"{f['transformer'] / 2**20:16.1f} {f['transformer'] / base['transformer']:9.2f}")
    return 0


def memory_table() -> int:
    """Estimated peak GiB per format and memory mode, 81 frames and one reference, bf16 compute."""
    from dataclasses import replace

    from refvideo.models.wan_vace import reference_facts

    rows = [("1.3B", "480p", 832, 480), ("14B", "720p", 1280, 720), ("14B", "480p", 832, 480)]
    for arch, label, w, h in rows:
        facts = reference_facts(f"Wan2.1-VACE-{arch}")
        formats = {"bf16/fp16": 0, "fp8 (weight_dtype)": facts.transformer_params}
        formats.update({k: int(facts.transformer_params * bits / 8) for k, bits in GGUF_BITS.items()})
        print(f"\n{arch} at {label} ({w}x{h}): peak GiB per mode")
        print(f"{'transformer format':22} " + " ".join(f"{m:>18}" for m in MODE_ORDER))
        for fmt, stored in formats.items():
            f = replace(facts, transformer_bytes=stored)
            peaks = [estimate(f, m, width=w, height=h, frames=81, references=1, dtype="bf16", vae_tiling=True,
                              cfg_batched=False).peak / GIB for m in MODE_ORDER]
            print(f"{fmt:22} " + " ".join(f"{p:18.1f}" for p in peaks))
        if arch == "14B" and label == "720p":
            two = replace(facts, experts=2)
            peaks = [estimate(two, m, width=w, height=h, frames=81, references=1, dtype="bf16", vae_tiling=True,
                              cfg_batched=False).peak / GIB for m in MODE_ORDER]
            print(f"{'Wan2.2 A14B bf16 x2':22} " + " ".join(f"{p:18.1f}" for p in peaks))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512, help="transformer width (2 heads; a multiple of 64)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-table", action="store_true", help="print the memory plan per format instead")
    args = parser.parse_args()
    return memory_table() if args.memory_table else run(args)


if __name__ == "__main__":
    sys.exit(main())
