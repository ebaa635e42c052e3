"""ComfyUI's own Wan VACE files: discovery, loading through the loader's real path, renders and refusals.

A tiny pipeline is written once in every on-disk format users hold (see comfy_model_files.py)
into a ComfyUI-like models tree, next to the same weights saved as a diffusers folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import comfy_model_files as C
from refvideo.engine.errors import InputError, ModelNotFound
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import WAN_FRAMES, plan_render
from refvideo.models import comfy_files, diffusers_loading, registry, single_file_loading, umt5_file
from refvideo.models.backend import RenderRequest
from refvideo.models.schedules import Schedule
from refvideo.models.spec import LoadOptions
from refvideo.nodes.model_loader import RefVideoModelLoader

FOLDER = "Wan-tiny-files"
PLAIN = "wan_vace_tiny_fp16.safetensors"
SCALED = "wan_vace_tiny_fp8_e4m3fn_scaled.safetensors"
GGUF = "wan_vace_tiny-Q8_0.gguf"
TE = "umt5_xxl_fp16.safetensors"
VAE = "wan_2.1_vae.safetensors"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The tiny model as a diffusers folder and as ComfyUI files, with the references each file holds."""
    root = tmp_path_factory.mktemp("comfy") / "models"
    tokenizer = root.parent / "tokenizer"
    tokenizer.mkdir(parents=True)
    (tokenizer / "spiece.model").write_bytes(C.sentencepiece_model())
    pipe = C.build_pipeline(tokenizer)
    pipe.save_pretrained(root / FOLDER, safe_serialization=True)
    for sub in ("diffusion_models", "unet", "text_encoders", "vae"):
        (root / sub).mkdir()
    refs = {
        PLAIN: C.write_transformer(root / "diffusion_models" / PLAIN, pipe.transformer),
        SCALED: C.write_scaled_fp8(root / "diffusion_models" / SCALED, pipe.transformer),
        GGUF: C.write_gguf(root / "unet" / GGUF, pipe.transformer),
        TE: C.write_umt5(root / "text_encoders" / TE, pipe.text_encoder, (tokenizer / "spiece.model").read_bytes()),
        VAE: C.write_vae(root / "vae" / VAE, pipe.vae),
    }
    return root, pipe, refs


@pytest.fixture
def models(written, monkeypatch):
    root, _, _ = written
    monkeypatch.setenv("REFVIDEO_MODELS", str(root))
    diffusers_loading.CACHE.release()
    yield root
    diffusers_loading.CACHE.release()


def file_model(name: str) -> str:
    return f"diffusion_models/{name}"


def transformer_inputs() -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(1, 16, 2, 8, 8, generator=g), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, 6, C.TEXT_DIM, generator=g),
                control_hidden_states=torch.randn(1, 96, 2, 8, 8, generator=g), return_dict=False)


def reference_transformer(state: dict):
    from diffusers import WanVACETransformer3DModel

    model = WanVACETransformer3DModel(**C.TRANSFORMER).eval()
    model.load_state_dict(state)
    return model


# --------------------------------------------------------------------------- discovery and configs


def test_vace_files_are_listed_as_diffusion_models_entries(models):
    (models / "diffusion_models" / "notes.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    torch_file = models / "diffusion_models" / "old.ckpt"
    torch_file.write_bytes(b"pickle")
    listed = registry.list_models()
    assert listed[:3] == ["previz", "tiny-random", FOLDER]
    assert listed[3:] == [file_model(PLAIN), file_model(SCALED), file_model(GGUF)]  # diffusion_models/, then unet/
    assert comfy_files.component_choices("text_encoder") == ["auto", TE]
    assert comfy_files.component_choices("vae") == ["auto", VAE]
    assert comfy_files.component_choices("transformer_2") == ["none", PLAIN, SCALED, GGUF]
    schema = RefVideoModelLoader.INPUT_TYPES()
    assert file_model(GGUF) in schema["required"]["model"][0]
    assert schema["optional"]["weight_dtype"][0] == ["default", "fp8_e4m3fn"]


@pytest.mark.parametrize("name", [PLAIN, SCALED, GGUF])
def test_config_from_shapes_is_the_folders_config(models, name):
    folder_config = json.loads((models / FOLDER / "transformer" / "config.json").read_text())
    path = next(models.glob(f"*/{name}"))
    derived = comfy_files.transformer_config(comfy_files.read_info(path))
    for key, value in derived.items():
        expected = folder_config[key]
        assert (list(value) if isinstance(value, tuple) else value) == expected, key


def test_real_sizes_give_wans_head_size():
    shapes = {"patch_embedding.weight": (5120, 16, 1, 2, 2), "head.head.weight": (64, 5120),
              "text_embedding.0.weight": (5120, 4096), "time_embedding.0.weight": (5120, 256),
              "blocks.0.ffn.0.weight": (13824, 5120), "vace_patch_embedding.weight": (5120, 96, 1, 2, 2),
              **{f"blocks.{i}.self_attn.q.weight": (5120, 5120) for i in range(40)},
              **{f"vace_blocks.{i}.before_proj.weight": (5120, 5120) for i in range(8)}}
    info = comfy_files.FileInfo(Path("x.safetensors"), {k: comfy_files.TensorInfo(v, 0, "BF16")
                                                        for k, v in shapes.items()}, "safetensors")
    config = comfy_files.transformer_config(info)
    assert (config["num_attention_heads"], config["attention_head_dim"]) == (40, 128)
    assert config["vace_layers"] == [0, 5, 10, 15, 20, 25, 30, 35] and config["num_layers"] == 40


# --------------------------------------------------------------------------- loading, format by format


def test_safetensors_transformer_vae_and_umt5_load_bit_exact(models, written):
    _, pipe, refs = written
    info = comfy_files.read_info(models / "diffusion_models" / PLAIN)
    loaded = single_file_loading.load_transformer(info, torch.float32).state_dict()
    assert loaded.keys() == refs[PLAIN].keys() and all(torch.equal(loaded[k], v) for k, v in refs[PLAIN].items())
    vae = single_file_loading.load_vae(comfy_files.read_info(models / "vae" / VAE)).state_dict()
    assert vae.keys() == refs[VAE].keys() and all(torch.equal(vae[k], v) for k, v in refs[VAE].items())
    encoder, tokenizer = umt5_file.load(comfy_files.read_info(models / "text_encoders" / TE), torch.float32)
    state = encoder.state_dict()
    assert all(torch.equal(state[k], v) for k, v in refs[TE].items())
    text = "Mara waits on the pier, slow dolly in"
    assert tokenizer(text).input_ids == pipe.tokenizer(text).input_ids
    ids = pipe.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(encoder(ids).last_hidden_state, pipe.text_encoder(ids).last_hidden_state)


@pytest.mark.parametrize("name", [SCALED, GGUF])
def test_quantized_files_compute_what_their_dequantized_weights_compute(models, written, name):
    """fp8: the file's fp8 weights times their scales. GGUF: ``gguf.quants.dequantize``'s weights, which
    diffusers' GGUF layers compute in float16 before casting (one float16 rounding per weight)."""
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    _, _, refs = written
    info = comfy_files.read_info(next(models.glob(f"*/{name}")))
    model = single_file_loading.load_transformer(info, torch.float32)
    reference = dict(refs[name])
    if name == GGUF:
        stored = info.stripped()
        params = dict(model.named_parameters())
        for key in reference:
            if stored[C.transformer_key(key)].dtype in ("F32", "F16"):
                continue
            param = params[key]
            ours = dequantize_gguf_tensor(param) if isinstance(param, GGUFParameter) else param
            torch.testing.assert_close(ours.float().reshape(reference[key].shape), reference[key], rtol=2**-10, atol=0)
            reference[key] = reference[key].half().float()
    with torch.no_grad():
        out = model(**transformer_inputs())[0]
        expected = reference_transformer(reference)(**transformer_inputs())[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_gguf_weights_stay_quantized(models, written):
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter

    info = comfy_files.read_info(models / "unet" / GGUF)
    assert {"Q8_0", "Q4_K", "F32"} <= set(info.quant_types)
    model = single_file_loading.load_transformer(info, torch.float32)
    k_quant = model.get_submodule(C.K_QUANT_KEY.rsplit(".", 1)[0])
    assert isinstance(k_quant, GGUFLinear) and isinstance(k_quant.weight, GGUFParameter)
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    full = sum(v.numel() * 4 for v in written[2][PLAIN].values())
    assert held < 0.5 * full  # Q8_0 / Q4_K bytes, not fp32


def test_scaled_fp8_weights_stay_fp8_with_their_scales(models, written):
    info = comfy_files.read_info(models / "diffusion_models" / SCALED)
    model = single_file_loading.load_transformer(info, torch.float32)
    layer = model.blocks[0].attn1.to_q
    stored = info.tensors["model.diffusion_model.blocks.0.self_attn.q.weight"]
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.scale_weight.numel() == 1
    assert model.dtype == torch.float32  # what the pipeline computes in
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    assert held < 0.5 * sum(v.numel() * 4 for v in written[2][PLAIN].values()) and stored.dtype == "F8_E4M3"
    assert registry.resolve(file_model(SCALED)).spec.arch.transformer_bytes == info.weight_bytes


# --------------------------------------------------------------------------- renders


def _request(**changes) -> RenderRequest:
    rng = np.random.default_rng(0)
    refs = ReferenceSet((Reference(rng.random((40, 30, 3), dtype=np.float32), np.ones((40, 30), np.float32),
                                   "character", "a"),))
    plan = plan_render("144p", "16:9", 5, fps=1.6, rule=WAN_FRAMES)  # 9 frames at 256x144
    settings = dict(references=refs, prompt="walk", composed_prompt="mara walks to the window",
                    negative_prompt="", plan=plan, seed=3, steps=2, guidance=1.0)
    return RenderRequest(**{**settings, **changes})


@pytest.mark.slow
def test_single_file_render_equals_the_diffusers_folder_render(models):
    from_files = registry.resolve(file_model(PLAIN)).backend().render(_request())
    from_folder = registry.resolve(FOLDER).backend().render(_request())
    assert from_files.frames.shape == (9, 144, 256, 3)
    np.testing.assert_allclose(from_files.frames, from_folder.frames, atol=1e-5)
    assert from_files.info["weights_fingerprint"].startswith("sha256:")


@pytest.mark.slow
@pytest.mark.parametrize("name", [PLAIN, SCALED, GGUF])
def test_the_loader_renders_each_format(models, name):
    handle, report = RefVideoModelLoader().load(file_model(name), text_encoder=TE, vae="auto")["result"]
    assert name in report and VAE in report
    result = handle.backend().render(_request(steps=1))
    assert result.frames.shape == (9, 144, 256, 3) and np.isfinite(result.frames).all() and result.frames.std() > 0


def test_refvideo_run_refuses_144p_for_a_file_model_before_loading(models, tmp_path, capsys):
    from refvideo.engine.paths import API_WORKFLOWS_DIR
    from refvideo.headless.cli import main

    loads, out = diffusers_loading.CACHE.loads, tmp_path / "out"
    code = main(["run", str(API_WORKFLOWS_DIR / "demo_shot.json"), "--set", f"2.model={file_model(PLAIN)}",
                 "--set", f"2.text_encoder={TE}", "--set", "2.vae=auto", "--set", "3.resolution=144p",
                 "--output-dir", str(out), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 2 and not payload["ok"] and payload["errors"][0]["input"] == "resolution", payload
    assert diffusers_loading.CACHE.loads == loads and not (out.exists() and list(out.iterdir()))  # nothing loaded


def _count_calls(module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.slow
def test_a_wan22_folder_uses_both_experts_and_guidance_2(models, written):
    pipe = C.build_pipeline(written[0].parent / "tokenizer", transformer_2=True)
    pipe.save_pretrained(models / "Wan22-tiny", safe_serialization=True)
    try:
        handle = registry.resolve("Wan22-tiny")
        assert handle.spec.arch.experts == 2 and "Wan 2.2" in handle.spec.description
        backend = handle.backend()
        high, low = _count_calls(backend.loaded.pipe.transformer), _count_calls(backend.loaded.pipe.transformer_2)
        # shift 1: the 2 steps' timesteps (1000, 500) fall on either side of the 875 boundary (Wan's shift 16
        # would keep both above it)
        both = Schedule("UniPCMultistepScheduler", 1.0)
        result = backend.render(_request(schedule=both))
        frames = result.frames
        assert np.isfinite(frames).all() and result.info["architecture"].startswith("Wan 2.2")
        assert high[0] >= 1 and low[0] >= 1 and high[0] + low[0] == 2  # 2 steps, guidance off: one call each

        guided = [backend.render(_request(guidance=3.0, guidance_2=g, schedule=both)).frames for g in (0.0, 3.0, 6.0)]
    finally:
        shutil.rmtree(models / "Wan22-tiny")
    np.testing.assert_array_equal(guided[0], guided[1])  # 0 = the same as guidance
    assert np.abs(guided[2] - guided[0]).max() > 1e-4  # the low-noise expert got its own scale


def test_guidance_2_is_checked_and_noted_for_one_expert_models():
    from refvideo.jobs.generation import SamplerInputs, prepare

    refs = _request().references
    job = prepare(SamplerInputs(model="tiny-random", references=refs, prompt="walk", guidance_2=4.0,
                                resolution="144p"))
    assert job.guidance_2 == 0.0 and any("guidance_2" in w for w in job.warnings)
    with pytest.raises(InputError) as err:
        prepare(SamplerInputs(model="tiny-random", references=refs, prompt="walk", guidance_2=-1.0, resolution="144p"))
    assert err.value.input == "guidance_2"


@pytest.mark.slow
def test_two_single_files_make_a_wan22_pipeline(models):
    handle = registry.resolve(file_model(PLAIN), LoadOptions(transformer_2=GGUF))
    assert handle.spec.arch.experts == 2
    report = registry.report(handle)
    assert "Wan 2.2" in report and GGUF in report
    pipe = handle.backend().loaded.pipe
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == 0.875


# --------------------------------------------------------------------------- fp8 storage and the memory plan


@pytest.mark.slow
def test_fp8_storage_halves_weight_bytes_and_renders(models):
    handle = registry.resolve(file_model(PLAIN), LoadOptions(weight_dtype="fp8_e4m3fn"))
    plain = registry.resolve(file_model(PLAIN)).spec.arch
    assert handle.spec.arch.transformer_bytes == plain.transformer_params
    default = registry.resolve(file_model(PLAIN)).backend().loaded
    backend = handle.backend()
    assert backend.loaded is not default  # weight_dtype is part of the pipeline cache key
    assert registry.resolve(file_model(PLAIN)).backend().loaded is not backend.loaded
    linear = backend.loaded.pipe.transformer.blocks[0].attn1.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn and backend.loaded.fp8_components == ["transformer"]
    frames = backend.render(_request()).frames
    assert np.isfinite(frames).all() and frames.std() > 0


def test_memory_plan_counts_each_formats_bytes(models):
    from refvideo.engine.memory_plan import estimate

    gguf = registry.resolve(file_model(GGUF)).spec.arch
    plain = registry.resolve(file_model(PLAIN)).spec.arch
    info = comfy_files.read_info(models / "unet" / GGUF)
    assert gguf.transformer_bytes == info.weight_bytes < plain.transformer_params * 4
    kw = dict(width=256, height=144, frames=9, references=1, dtype="fp32", vae_tiling=False, cfg_batched=False)
    assert estimate(gguf, "none", **kw).weights < estimate(plain, "none", **kw).weights
    two = registry.resolve(file_model(PLAIN), LoadOptions(transformer_2=SCALED)).spec.arch
    assert two.experts == 2
    both = estimate(two, "none", **kw).weights - estimate(plain, "none", **kw).weights
    assert both == plain.transformer_params * 4  # all resident: both experts counted
    for mode in ("model_offload", "group_offload"):
        assert estimate(two, mode, **kw) == estimate(plain, mode, **kw), mode  # one expert on the device at a time


# --------------------------------------------------------------------------- refusals


def test_folder_models_ignore_component_files_with_a_note(models):
    out = RefVideoModelLoader().load(FOLDER, text_encoder=TE, vae=VAE)
    assert "Ignored for a model folder" in out["result"][1] and TE in out["result"][1]


@pytest.mark.parametrize("kind, edit, input_name, words", [
    ("text_encoder", lambda r: shutil.move(r / "text_encoders", r.parent / "te_away"), "text_encoder", "umt5_xxl"),
    ("vae", lambda r: shutil.move(r / "vae", r.parent / "vae_away"), "vae", "wan_2.1_vae"),
])
def test_a_missing_component_is_refused_naming_the_file_and_its_folder(models, kind, edit, input_name, words):
    edit(models)
    try:
        with pytest.raises(ModelNotFound) as err:
            registry.resolve(file_model(PLAIN))
        assert err.value.input == input_name and words in err.value.fix and "models" in err.value.fix
    finally:
        away = models.parent / ("te_away" if kind == "text_encoder" else "vae_away")
        shutil.move(away, models / ("text_encoders" if kind == "text_encoder" else "vae"))


@pytest.mark.parametrize("options, input_name, words", [
    (dict(text_encoder=VAE), "text_encoder", "not found"),  # a VAE file is not in text_encoders/
    (dict(vae="missing.safetensors"), "vae", "not found"),
    (dict(text_encoder="../vae/" + VAE), "text_encoder", "not a model name"),
    (dict(vae="wan.ckpt"), "vae", "safetensors and GGUF"),
    (dict(transformer_2=PLAIN), "transformer_2", "same file"),
    (dict(weight_dtype="fp8_e4m3fn"), "weight_dtype", "GGUF"),
])
def test_wrong_component_choices_are_refused(models, options, input_name, words):
    model = file_model(GGUF if "weight_dtype" in options else PLAIN)
    with pytest.raises((ModelNotFound, InputError)) as err:
        registry.resolve(model, LoadOptions(**options))
    assert err.value.input == input_name and words in str(err.value)


def test_a_file_of_the_wrong_kind_is_refused(models):
    shutil.copy(models / "vae" / VAE, models / "text_encoders" / "not_umt5.safetensors")
    shutil.copy(models / "vae" / VAE, models / "diffusion_models" / "not_vace.safetensors")
    try:
        assert file_model("not_vace.safetensors") not in registry.list_models()
        with pytest.raises(ModelNotFound, match="not a UMT5 text encoder"):
            registry.resolve(file_model(PLAIN), LoadOptions(text_encoder="not_umt5.safetensors"))
        with pytest.raises(ModelNotFound, match="not a Wan VACE transformer"):
            registry.resolve(file_model("not_vace.safetensors"))
    finally:
        (models / "text_encoders" / "not_umt5.safetensors").unlink()
        (models / "diffusion_models" / "not_vace.safetensors").unlink()


def test_another_architecture_as_transformer_2_is_refused(models, written):
    from diffusers import WanVACETransformer3DModel

    other = WanVACETransformer3DModel(**{**C.TRANSFORMER, "num_layers": 2}).eval()
    C.write_transformer(models / "diffusion_models" / "other.safetensors", other)
    try:
        with pytest.raises(InputError, match="another architecture") as err:
            registry.resolve(file_model(PLAIN), LoadOptions(transformer_2="other.safetensors"))
        assert err.value.input == "transformer_2"
    finally:
        (models / "diffusion_models" / "other.safetensors").unlink()


@pytest.mark.parametrize("name, write, words", [
    ("broken_fp8_e4m3fn_scaled.safetensors",
     lambda p, m: C.write_scaled_fp8(p, m, drop_scale="model.diffusion_model.blocks.0.self_attn.q"),
     "no usable scale_weight"),
    ("odd.gguf", lambda p, m: C.write_gguf(p, m, unsupported="blocks.0.ffn.2.weight"), "IQ2_XXS"),
])
def test_a_file_that_cannot_be_read_right_is_refused_not_rendered(models, written, name, write, words):
    path = models / "diffusion_models" / name
    write(path, written[1].transformer)
    try:
        with pytest.raises(ModelNotFound, match=words):
            single_file_loading.load_transformer(comfy_files.read_info(path), torch.float32)
    finally:
        path.unlink()


def test_an_unknown_weight_dtype_is_refused():
    with pytest.raises(InputError) as err:
        LoadOptions(weight_dtype="int4")
    assert err.value.input == "weight_dtype"
