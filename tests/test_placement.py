"""Placement: the GPU decisions on described devices, and real offload + compile on a CPU onload device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from refvideo.engine.errors import InputError
from refvideo.models import diffusers_loading as loading
from refvideo.models import placement, registry, tiny_random
from refvideo.models.placement import DeviceInfo
from refvideo.models.spec import LoadOptions, Placement

CPU = torch.device("cpu")
GIB = 1024**3
H100 = DeviceInfo("cuda", (9, 0), 70 * GIB, 80 * GIB, triton=True, name="H100")
A100 = DeviceInfo("cuda", (8, 0), 30 * GIB, 40 * GIB, triton=True, name="A100")
RTX4090_NO_TRITON = DeviceInfo("cuda", (8, 9), 20 * GIB, 24 * GIB, triton=False, name="RTX 4090 (Windows)")
T4 = DeviceInfo("cuda", (7, 5), 14 * GIB, 15 * GIB, triton=True, name="T4")
V100 = DeviceInfo("cuda", (7, 0), 30 * GIB, 32 * GIB, triton=True, name="V100")
MAC = DeviceInfo("mps")
CPU_INFO = DeviceInfo("cpu")


@pytest.fixture(autouse=True)
def nothing_loaded_before():
    loading.CACHE.release()
    yield
    loading.CACHE.release()


def test_auto_dtype_is_bf16_only_where_the_card_has_it_natively():
    assert [placement.choose_dtype("auto", d) for d in (H100, A100, RTX4090_NO_TRITON, T4, V100, MAC, CPU_INFO)] == \
        ["bf16", "bf16", "bf16", "fp16", "fp16", "fp16", "fp32"]
    assert placement.choose_dtype("bf16", T4) == "bf16" and placement.choose_dtype("fp32", H100) == "fp32"
    assert "fp32" in placement.nan_fix("fp16", T4) and "no native bf16" in placement.nan_fix("fp16", T4)
    assert "bf16 or fp32" in placement.nan_fix("fp16", MAC)


@pytest.mark.parametrize("mode, fullgraph", [("none", True), ("model_offload", True), ("group_offload", False),
                                             ("sequential_offload", False)])
def test_auto_compile_runs_in_every_memory_mode(mode, fullgraph):
    # offload hooks are torch.compiler.disable()d: a full graph cannot include them
    assert placement.choose_compile("auto", mode, H100) == placement.CompileChoice("blocks", fullgraph)
    assert placement.choose_compile("full", mode, H100) == placement.CompileChoice("full", False)


def test_compile_that_cannot_run_is_never_auto_and_refused_when_asked():
    for device in (RTX4090_NO_TRITON, MAC, CPU_INFO):
        assert placement.choose_compile("auto", "none", device).mode == "off"
    for device, choice in ((RTX4090_NO_TRITON, "blocks"), (RTX4090_NO_TRITON, "full"), (MAC, "blocks")):
        with pytest.raises(InputError) as err:
            placement.choose_compile(choice, "group_offload", device)
        assert err.value.input == "compile" and "auto or off" in err.value.fix


def test_group_offload_streams_the_transformer_only_without_pinning_everything():
    plan = placement.offload_plan("group_offload", H100)
    assert plan.components == ("transformer", "transformer_2") and plan.resident == ("vae",)
    assert plan.parked == ("text_encoder",)
    assert plan.kwargs() == {"offload_type": "block_level", "use_stream": True, "low_cpu_mem_usage": True,
                             "num_blocks_per_group": 1}
    leaf = placement.offload_plan("sequential_offload", H100)
    assert leaf.kwargs()["offload_type"] == "leaf_level" and leaf.low_cpu_mem_usage
    assert not placement.offload_plan("group_offload", CPU_INFO).use_stream
    assert placement.offload_plan("none", H100) is None and placement.offload_plan("model_offload", H100) is None


def test_timestamps_wait_for_the_device_where_it_runs_ahead():
    assert placement.needs_sync(H100) and placement.needs_sync(MAC) and not placement.needs_sync(CPU_INFO)
    waits: list[str] = []
    clock = placement.Stopwatch(lambda: waits.append("sync"))
    first, second = clock.stamp("a"), clock.stamp("b")
    assert waits == ["sync", "sync"] and second >= first and set(clock.stamps) == {"a", "b"}


def test_auto_attention_follows_the_described_card_and_the_head_size():
    assert loading._auto_attention(H100, head_dim=128) == "_native_cudnn"
    assert loading._auto_attention(H100, head_dim=12) is None  # cuDNN attention needs multiples of 8
    assert loading._auto_attention(A100, head_dim=128) is None and loading._auto_attention(CPU_INFO, 128) is None


def latents(pipe) -> torch.Tensor:
    with torch.inference_mode():
        return pipe(prompt="a walk", height=64, width=112, num_frames=5, num_inference_steps=1, guidance_scale=1.0,
                    output_type="latent", generator=torch.Generator().manual_seed(0)).frames


def group_hooked(module) -> bool:
    return any(getattr(m, "_diffusers_hook", None) is not None and "group_offloading" in m._diffusers_hook.hooks
               for m in module.modules())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["group_offload", "sequential_offload"])
def test_real_offload_hooks_and_compiled_blocks_run_together(mode):
    reference = latents(tiny_random.build_pipeline())
    pipe = tiny_random.build_pipeline()
    loading.freeze(pipe)
    assert placement.place(pipe, mode, CPU, CPU_INFO) == mode  # a CPU onload device: the hooks are real
    assert group_hooked(pipe.transformer)
    assert group_hooked(pipe.text_encoder) == (mode == "sequential_offload")  # group_offload parks it whole
    choice = dataclasses.replace(placement.choose_compile("auto", mode, H100), backend="eager")
    try:
        placement.compile_transformer(pipe, dataclasses.replace(choice, fullgraph=True))  # what auto did before
        with pytest.raises(Exception, match="disable"):  # the hooks cannot be inside one graph
            latents(pipe)
        placement.uncompile(pipe)
        torch._dynamo.reset()
        assert placement.compile_transformer(pipe, choice) == "blocks (graph breaks)"
        torch.testing.assert_close(latents(pipe), reference)
    finally:
        placement.uncompile(pipe)
        torch._dynamo.reset()


def test_other_memory_modes_tiling_and_attention_re_place_without_loading_again():
    loads = loading.CACHE.loads
    fp32 = LoadOptions(dtype="fp32")  # equal numbers across placements (bf16 kernels may round differently)
    first = registry.resolve("tiny-random", fp32).backend()
    reference = latents(first.loaded.pipe)
    moved = registry.resolve("tiny-random", fp32).with_options(memory_mode="group_offload", vae_tiling=True,
                                                               attention="sdpa").backend()
    assert moved.loaded is first.loaded and loading.CACHE.loads == loads + 1  # loaded once
    assert moved.loaded.memory_mode == "group_offload" and group_hooked(moved.loaded.pipe.transformer)
    assert moved.loaded.pipe.vae.use_tiling and moved.loaded.attention == "native"
    torch.testing.assert_close(latents(moved.loaded.pipe), reference)
    back = registry.resolve("tiny-random", fp32).backend()
    assert back.loaded.memory_mode == "none" and not group_hooked(back.loaded.pipe.transformer)
    assert not back.loaded.pipe.vae.use_tiling and loading.CACHE.loads == loads + 1
    torch.testing.assert_close(latents(back.loaded.pipe), reference)
    other_weights = registry.resolve("tiny-random").with_options(dtype="bf16").backend()
    assert loading.CACHE.loads == loads + 2 and other_weights.loaded.dtype == "bf16"  # new weights: a load


def test_the_cache_key_is_the_weights_only():
    base = LoadOptions().weights_key(("tiny-random",), "fp32")
    placed = LoadOptions(memory_mode="group_offload", vae_tiling=True, attention="sdpa", compile="off",
                         cfg_batching="on").weights_key(("tiny-random",), "fp32")
    assert base == placed and hash(base) == hash(placed)
    assert LoadOptions(lora="a.safetensors").weights_key(("tiny-random",), "fp32") != base
    assert LoadOptions().weights_key(("tiny-random",), "bf16") != base
    for files in (dict(text_encoder="umt5.safetensors"), dict(vae="wan_vae.safetensors"),
                  dict(transformer_2="low.gguf"), dict(weight_dtype="fp8_e4m3fn")):
        assert LoadOptions(**files).weights_key(("tiny-random",), "fp32") != base, files  # other weights: a load
    assert LoadOptions(memory_mode="group_offload").placement() == Placement("group_offload", False, "auto", "auto")


def test_the_text_encoder_waits_on_the_cpu_and_comes_over_to_encode():
    backend = registry.resolve("tiny-random").with_options(memory_mode="group_offload").backend()
    seen: list[str] = []
    hook = backend.loaded.pipe.text_encoder.register_forward_pre_hook(
        lambda module, args: seen.append(str(next(module.parameters()).device)))
    try:
        backend._embeddings("a walk", "blur", True)
    finally:
        hook.remove()
    assert seen and all(torch.device(d).type == backend.loaded.device.type for d in seen)  # encoded there
    assert str(next(backend.loaded.pipe.text_encoder.parameters()).device) == "cpu"  # then parked again
    assert np.isfinite(backend.loaded.embeddings[("a walk", "blur")][0].float().cpu().numpy()).all()
