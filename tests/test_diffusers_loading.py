"""Loading helpers: LoRA fusing, the one-pipeline cache, attention and placement options."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from safetensors.torch import save_file

from refvideo.engine.errors import InputError, MissingDependency
from refvideo.models import diffusers_loading as loading
from refvideo.models import placement, registry, tiny_random
from refvideo.models.placement import DeviceInfo
from refvideo.models.spec import LoadOptions

CPU = torch.device("cpu")


def lora_file(path, rank=4, width=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(rank, width, generator=g), torch.randn(width, rank, generator=g)
    save_file({"transformer.blocks.0.attn1.to_q.lora_A.weight": a,
               "transformer.blocks.0.attn1.to_q.lora_B.weight": b}, str(path))
    return a, b


def test_lora_from_the_lora_folder_is_fused_at_its_strength(refvideo_home):
    folder = refvideo_home / "models" / "loras"
    folder.mkdir(parents=True)
    a, b = lora_file(folder / "distill_test.safetensors")
    base = tiny_random.build_pipeline().transformer.blocks[0].attn1.to_q.weight.detach().clone()
    handle = registry.resolve("tiny-random", LoadOptions(lora="distill_test.safetensors", lora_strength=0.5))
    loaded = handle.backend().loaded
    layer = loaded.pipe.transformer.blocks[0].attn1.to_q
    assert type(layer) is torch.nn.Linear  # fused: no adapter layers left at run time
    torch.testing.assert_close(layer.weight.detach(), base + 0.5 * b @ a)
    assert loaded.loras == [{"name": "distill_test.safetensors", "strength": 0.5, "fused": True}]


def test_a_lora_for_another_model_is_refused(refvideo_home, tmp_path):
    path = tmp_path / "other.safetensors"
    lora_file(path, width=40)  # shapes of a different architecture
    pipe = tiny_random.build_pipeline()
    with pytest.raises(InputError) as err:
        loading.apply_lora(pipe, path, 1.0)
    assert err.value.input == "lora"


@pytest.mark.slow
def test_the_cache_keeps_one_pipeline_and_releases_the_previous():
    loading.CACHE.release()
    first = loading.load_cached("a", lambda: loading.LoadedPipeline(tiny_random.build_pipeline(), CPU, "fp32",
                                                                    "none", "default", "off"))
    assert loading.load_cached("a", lambda: pytest.fail("rebuilt")) is first
    gone = weakref.ref(first.pipe)
    del first
    second = loading.load_cached("b", lambda: loading.LoadedPipeline(tiny_random.build_pipeline(), CPU, "fp32",
                                                                     "none", "default", "off"))
    gc.collect()
    assert gone() is None and loading.CACHE.holds("b") and not loading.CACHE.holds("a")
    assert second.resident_bytes() > 0
    assert loading.CACHE.release() and loading.CACHE.current() is None and not loading.CACHE.release()


def test_options_map_onto_diffusers():
    pipe = tiny_random.build_pipeline()
    assert loading.resolve_dtype("auto", CPU) == "fp32" and loading.resolve_dtype("bf16", CPU) == "bf16"
    assert loading.apply_attention(pipe, "auto", DeviceInfo("cpu")) == "native"  # PyTorch SDPA
    assert loading.apply_attention(pipe, "sdpa", DeviceInfo("cpu")) == "native"
    with pytest.raises(MissingDependency) as err:
        loading.apply_attention(pipe, "flash-attn", DeviceInfo("cpu"))
    assert err.value.package == "flash-attn"
    loading.apply_attention(pipe, "sdpa", DeviceInfo("cpu"))
    with pytest.raises(InputError) as refused:
        placement.place(pipe, "model_offload", CPU, DeviceInfo("cpu"))  # moves whole components to a GPU
    assert refused.value.input == "memory_mode"
    assert loading.free_memory(CPU) > 0


def test_bf16_weights_on_request_frozen_for_inference():
    pipe = tiny_random.build_pipeline()
    assert any(p.requires_grad for p in pipe.transformer.parameters())  # as built
    loaded = loading.prepare(pipe, device=CPU, dtype="bf16", lora=None)
    assert loaded.pipe.transformer.dtype == torch.bfloat16 and loaded.pipe.text_encoder.dtype == torch.bfloat16
    assert loaded.pipe.vae.dtype == torch.float32  # the VAE stays in fp32
    for name in ("transformer", "text_encoder", "vae"):
        module = getattr(loaded.pipe, name)
        assert not module.training and not any(p.requires_grad for p in module.parameters())
