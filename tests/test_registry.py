"""The model registry and RefVideoModelLoader: discovery, validation before loading, real loading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from refvideo.engine.errors import InputError, ModelNotFound
from refvideo.engine.references.reference import Reference, ReferenceSet
from refvideo.engine.sizes import WAN_FRAMES, plan_render
from refvideo.models import diffusers_loading, registry, schedules, tiny_random
from refvideo.models.backend import RenderRequest
from refvideo.models.spec import LoadOptions
from refvideo.nodes.model_loader import RefVideoModelLoader

NAME = "Wan-tiny-VACE"


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    """A tiny Wan VACE pipeline written with save_pretrained: a real diffusers model folder."""
    folder = tmp_path_factory.mktemp("saved") / NAME
    tiny_random.build_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture
def models_dir(tmp_path, monkeypatch, saved_pipeline):
    """A models folder (REFVIDEO_MODELS) holding a copy of the saved pipeline."""
    root = tmp_path / "models"
    shutil.copytree(saved_pipeline, root / NAME)
    monkeypatch.setenv("REFVIDEO_MODELS", str(root))
    return root


@pytest.fixture(autouse=True)
def nothing_loaded_before():
    diffusers_loading.CACHE.release()


def break_folder(root, name, edit):
    folder = root / name
    shutil.copytree(root / NAME, folder)
    edit(folder)
    return folder


@pytest.mark.slow
def test_combo_order_and_discovery(models_dir):
    (models_dir / "not-a-model").mkdir()
    (models_dir / ".hidden").mkdir()
    shutil.copytree(models_dir / NAME, models_dir / "Wan-AI" / "nested-vace")  # org/name layout
    other = break_folder(models_dir, "sdxl", lambda f: None)
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionXLPipeline"}))
    assert registry.list_models() == ["previz", "tiny-random", "Wan-AI/nested-vace", NAME]  # folders sorted
    assert registry.match_targets() == ["auto", "tiny-random", "Wan-AI/nested-vace", NAME]


def test_a_linked_model_folder_is_listed_and_resolves(models_dir, tmp_path):
    elsewhere = tmp_path / "big_disk" / "vace"
    shutil.move(str(models_dir / NAME), elsewhere)
    (models_dir / "linked-vace").symlink_to(elsewhere, target_is_directory=True)
    assert registry.list_models() == ["previz", "tiny-random", "linked-vace"]
    assert registry.resolve("linked-vace", LoadOptions()).folder == models_dir / "linked-vace"


def test_without_models_only_the_builtins_are_listed():
    assert registry.list_models() == ["previz", "tiny-random"]


def test_discovered_folder_spec_without_loading(models_dir):
    handle = registry.resolve(NAME)
    spec = handle.spec
    assert (spec.fps, spec.frame_rule, spec.size_multiple, spec.native_resolution) == (16.0, WAN_FRAMES, 16, "480p")
    assert spec.roles == {"character", "environment", "prop"}
    assert (spec.default_steps, spec.default_guidance) == (50, 5.0)
    pipe = tiny_random.build_pipeline()
    assert spec.arch.transformer_params == sum(p.numel() for p in pipe.transformer.parameters())
    assert spec.arch.control_layers == 2 and spec.arch.hidden == 24
    assert diffusers_loading.CACHE.current() is None  # the spec is read without loading anything


@pytest.mark.parametrize("name, edit, words", [
    ("no-index", lambda f: (f / "model_index.json").unlink(), "no model_index.json"),
    ("wrong-class", lambda f: (f / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"})),
     "FluxPipeline pipeline"),
    ("no-vae", lambda f: shutil.rmtree(f / "vae"), "'vae/' is missing"),
    ("no-config", lambda f: (f / "transformer" / "config.json").unlink(), "config.json' is missing"),
    ("pickle", lambda f: (f / "transformer" / "diffusion_pytorch_model.safetensors").rename(
        f / "transformer" / "diffusion_pytorch_model.bin"), "pickle-format"),
    ("no-weights", lambda f: (f / "text_encoder" / "model.safetensors").unlink(), "no .safetensors"),
    ("bad-index", lambda f: (f / "model_index.json").write_text("{oops"), "cannot be read"),
])
def test_broken_folders_are_refused_before_loading(models_dir, name, edit, words):
    break_folder(models_dir, name, edit)
    with pytest.raises(ModelNotFound) as err:
        registry.resolve(name)
    assert err.value.input == "model" and words in str(err.value) and err.value.fix
    assert diffusers_loading.CACHE.current() is None


def test_missing_shard_is_refused(models_dir):
    def shard(folder):
        index = {"weight_map": {"a": "part-1.safetensors", "b": "part-2.safetensors"}}
        (folder / "vae" / "diffusion_pytorch_model.safetensors").rename(folder / "vae" / "part-1.safetensors")
        (folder / "vae" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    break_folder(models_dir, "sharded", shard)
    with pytest.raises(ModelNotFound, match="part-2.safetensors"):
        registry.resolve("sharded")


@pytest.mark.parametrize("name", ["nope", "../etc", "/abs/path", ""])
def test_unknown_or_escaping_names_are_refused(models_dir, name):
    with pytest.raises(InputError) as err:
        registry.resolve(name)
    assert err.value.input == "model"


def test_previz_is_timed_like_its_target(models_dir):
    assert (registry.resolve("previz").spec.fps, registry.resolve("previz").spec.frame_rule) == (16.0, WAN_FRAMES)
    tiny = registry.resolve("previz", LoadOptions(match_frames_of="tiny-random")).spec
    assert (tiny.fps, tiny.frame_rule, tiny.needs_weights) == (4.0, WAN_FRAMES, False)
    assert registry.resolve("previz", LoadOptions(match_frames_of=NAME)).spec.fps == 16.0
    for target in ("previz", "missing-model"):
        with pytest.raises(InputError) as err:
            registry.resolve("previz", LoadOptions(match_frames_of=target))
        assert err.value.input == "match_frames_of"


def test_options_are_checked(tmp_path):
    for field, value in (("dtype", "int8"), ("memory_mode", "swap"), ("preset", "ultra"), ("attention", "xformers"),
                         ("compile", "max"), ("lora_strength", float("nan"))):
        with pytest.raises(InputError) as err:
            LoadOptions(**{field: value})
        assert err.value.input == field
    with pytest.raises(ModelNotFound) as err:
        registry.resolve("tiny-random", LoadOptions(lora="missing.safetensors"))
    assert err.value.input == "lora"


def test_loras_are_listed_from_the_lora_folder(refvideo_home):
    root = refvideo_home / "models" / "loras"
    (root / "wan").mkdir(parents=True)
    (root / "wan" / "lightx2v_4step.safetensors").write_bytes(b"x")
    (root / "notes.txt").write_text("not a lora")
    assert registry.list_loras() == ["none", "wan/lightx2v_4step.safetensors"]
    assert registry.lora_path("wan/lightx2v_4step.safetensors") == (root / "wan" / "lightx2v_4step.safetensors")
    with pytest.raises(InputError):
        registry.lora_path("../escape.safetensors")
    with pytest.raises(InputError):
        registry.lora_path("/etc/escape.safetensors")
    (root / "wan" / "loop").symlink_to(root, target_is_directory=True)  # a link loop is listed once, not forever
    linked = refvideo_home / "shared_loras"
    linked.mkdir()
    (linked / "style.safetensors").write_bytes(b"x")
    (root / "shared").symlink_to(linked, target_is_directory=True)
    assert registry.list_loras() == ["none", "shared/style.safetensors", "wan/lightx2v_4step.safetensors"]
    assert registry.lora_path("shared/style.safetensors") == root / "shared" / "style.safetensors"


def test_loader_node_returns_a_lazy_handle_and_a_report(models_dir):
    out = RefVideoModelLoader().load(NAME, preset="draft", memory_mode="model_offload")
    handle, report = out["result"]
    assert isinstance(handle, registry.ModelHandle) and handle.options.memory_mode == "model_offload"
    assert NAME in report and "16 fps" in report and out["ui"]["text"] == [report]
    assert diffusers_loading.CACHE.current() is None
    tiny = RefVideoModelLoader().load("tiny-random")["result"][1]
    assert "TEST ONLY" in tiny


@pytest.mark.slow
def test_saved_folder_loads_through_from_pretrained_and_matches_the_built_pipeline(models_dir):
    """The real loading path (from_pretrained, local files, safetensors) gives the same weights."""
    rng = np.random.default_rng(0)
    refs = ReferenceSet((Reference(rng.random((40, 30, 3), dtype=np.float32), np.ones((40, 30), np.float32),
                                   "character", "a"),))
    plan = plan_render("144p", "16:9", 5, fps=1.6, rule=WAN_FRAMES)  # 9 frames, 256x144: quick
    request = dict(references=refs, prompt="walk", composed_prompt="walk", negative_prompt="", plan=plan, seed=5,
                   steps=2, guidance=1.0, schedule=schedules.schedule_for("default", "tiny", "144p"))  # one schedule
    loaded = registry.resolve(NAME).backend()
    assert loaded.loaded.fingerprint.startswith("sha256:")
    from_disk = loaded.render(RenderRequest(**request)).frames
    built = registry.resolve("tiny-random").backend().render(RenderRequest(**request)).frames
    assert from_disk.shape == (9, 144, 256, 3)
    np.testing.assert_allclose(from_disk, built, atol=1e-5)
