"""One rank of the context-parallel proof (run by tests/test_context_parallel.py under torchrun).

Every rank builds the same tiny VACE transformer and inputs, runs the single-process forward,
then the same forward with the VACE plan applied over the launched processes (Ulysses, ring,
and a deliberately wrong plan), and rank 0 writes the outputs to ``OUT/outputs.safetensors``
and what the wrong plan raised to ``OUT/wrong_plan.json``.

Two CPU-only stand-ins, both for diffusers 0.42.1 on a machine without GPUs, live here and
only here: ``enable_parallelism`` divides by ``torch.accelerator.device_count()`` (0 on CPU), and
ring attention needs the attention's log-sum-exp, which diffusers' ``native`` backend does
not return; a CPU backend returns it through ``aten._scaled_dot_product_flash_attention_for_cpu``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

torch.accelerator.device_count = lambda: 1  # CPU stand-in 1 (see the module docstring)


def install_cpu_ring_attention() -> None:
    """CPU stand-in 2: diffusers' ``native`` backend, with the log-sum-exp under context parallelism."""
    from diffusers.models import attention_dispatch as ad

    registry = ad._AttentionBackendRegistry._backends
    original = registry[ad.AttentionBackendName.NATIVE]

    def forward_op(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                   enable_gqa=False, return_lse=False, _save_ctx=True, _parallel_config=None):
        q, k, v = (x.transpose(1, 2) for x in (query, key, value))
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal,
                                                                              scale=scale)[:2]
        out, lse = out.transpose(1, 2), lse.transpose(1, 2)
        return (out, lse) if return_lse else out

    def native(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
               return_lse=False, _parallel_config=None):
        if _parallel_config is None:
            return original(query=query, key=key, value=value, attn_mask=attn_mask, dropout_p=dropout_p,
                            is_causal=is_causal, scale=scale, enable_gqa=enable_gqa, return_lse=return_lse)
        return ad._templated_context_parallel_attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, return_lse,
            forward_op=forward_op, backward_op=ad._native_attention_backward_op, _parallel_config=_parallel_config)

    registry[ad.AttentionBackendName.NATIVE] = native


def transformer():
    from diffusers import WanVACETransformer3DModel

    from refvideo.models.tiny_random import TRANSFORMER

    torch.manual_seed(0)
    return WanVACETransformer3DModel(**TRANSFORMER).eval()


def inputs() -> dict:
    g = torch.Generator().manual_seed(1)
    return {"hidden_states": torch.randn(1, 16, 3, 8, 14, generator=g),  # 3 x 4 x 7 = 84 tokens
            "control_hidden_states": torch.randn(1, 96, 3, 8, 14, generator=g),
            "encoder_hidden_states": torch.randn(1, 7, 32, generator=g),
            "timestep": torch.tensor([500])}


def forward(model, scale: float = 1.0) -> torch.Tensor:
    layers = len(model.config.vace_layers)
    with torch.no_grad():
        return model(**inputs(), control_hidden_states_scale=torch.full((layers,), scale),
                     return_dict=False)[0].contiguous()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from refvideo.models import context_parallel as cp

    results = {"single": forward(transformer()), "single_no_hints": forward(transformer(), 0.0)}
    model = transformer()
    cp.enable(model, "ulysses")
    results["ulysses"], results["ulysses_no_hints"] = forward(model), forward(model, 0.0)
    install_cpu_ring_attention()
    model = transformer()
    cp.enable(model, "ring")
    results["ring"] = forward(model)

    wrong = transformer()  # the main blocks left unsplit: the hints no longer line up with the tokens
    plan = {k: v for k, v in cp.vace_plan().items() if k != "blocks.0"}
    wrong.enable_parallelism(config=cp.config("ulysses", dist.get_world_size()), cp_plan=plan)
    try:
        forward(wrong)
        failure = None
    except RuntimeError as exc:
        failure = str(exc)
    if dist.get_rank() == 0:
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file(results, str(out / "outputs.safetensors"))
        (out / "wrong_plan.json").write_text(json.dumps({"error": failure}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
