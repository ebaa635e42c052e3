"""``tiny-random``: a tiny WanVACEPipeline with seeded random weights, built in code. Test-only.

It runs the same code path as a real Wan VACE model (the same backend, scheduler, reference
handling, progress, interrupts and generation info) in seconds on a CPU and without any
download, so tests and CI exercise generation end to end. Its output is structured noise.
It declares 4 fps so a 5 s clip is 21 frames, and renders 144p and 480p only.
"""

from __future__ import annotations

import string
from typing import Any

from ..engine.memory_plan import ArchFacts
from ..engine.sizes import WAN_FRAMES
from . import diffusers_loading as loading
from .family import TINY_RANDOM, ChosenModel
from .spec import ModelSpec, family_defaults

SEED = 0
Z_DIM = 16
TEXT_DIM = 32
# The component configs (the smallest that still exercise every part of Wan VACE).
TEXT_ENCODER = dict(d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
VAE = dict(base_dim=2, z_dim=Z_DIM, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=Z_DIM,
                   out_channels=Z_DIM, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2],
                   vace_in_channels=2 * Z_DIM + 64)
_FAMILY = family_defaults("tiny")

SPEC = ModelSpec(
    name=TINY_RANDOM, kind=TINY_RANDOM, fps=4.0, frame_rule=WAN_FRAMES, size_multiple=16,
    roles=frozenset({"character", "environment", "prop"}), default_steps=_FAMILY["default_steps"],
    default_guidance=_FAMILY["default_guidance"], resolutions=("144p", "480p"), native_resolution="480p",
    family="tiny", test_only=True,
    description="TEST ONLY: a tiny Wan VACE pipeline with seeded random weights; its output is noise.",
    arch=ArchFacts(text_encoder_params=22_240, transformer_params=59_408, vae_params=8_025, blocks=3, hidden=24,
                   ffn=32, control_layers=2, vae_base_dim=2, text_layers=2, text_hidden=TEXT_DIM,
                   largest_leaf_params=9_216, heads=2),
)


def _vocab() -> list[tuple[str, float]]:
    pieces = ["<pad>", "</s>", "<unk>", "\u2581"] + list(string.ascii_lowercase + string.digits + ".,;:'!?-")
    return [(p, 0.0 if i < 3 else -1.0 - i / 100) for i, p in enumerate(pieces)]


def build_pipeline(seed: int = SEED) -> Any:
    """A fresh tiny ``WanVACEPipeline`` (float32, CPU) with weights drawn from ``seed``."""
    torch, _, _ = loading.diffusion_libraries()
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    tokenizer = T5Tokenizer(vocab=_vocab(), extra_ids=0)
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(_vocab()), **TEXT_ENCODER)).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**VAE).eval()
    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(**TRANSFORMER).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                           transformer=transformer)


def fingerprint(pipe: Any) -> str:
    """A hash of every weight of a pipeline (cheap at this size)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("text_encoder", "transformer", "vae"):
        for key, tensor in sorted(getattr(pipe, name).state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def load(handle: ChosenModel):
    """The tiny-random backend, built once per process and set of load options."""
    from .wan_vace import load_backend

    return load_backend(handle, SPEC, (TINY_RANDOM,), lambda _dtype: build_pipeline(), fingerprint)
