"""AI audio: tiny-random, long clips in crossfaded pieces, real model folders, and clear refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from refvideo.engine import host
from refvideo.engine.errors import InputError, Interrupted, ModelNotFound, StorageError
from refvideo.models import audio
from refvideo.nodes.audio import RefVideoAudio


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """The tiny pipeline saved as a diffusers folder (safetensors), as a downloaded model would be."""
    folder = tmp_path_factory.mktemp("models") / "tiny-audio"
    audio.build_tiny_pipeline().save_pretrained(str(folder), safe_serialization=True)
    return folder


def install(saved_tiny, home, name="stable-audio-tiny"):
    target = home / "models" / "diffusers" / name
    shutil.copytree(saved_tiny, target)
    return target


@pytest.mark.slow
def test_tiny_random_makes_clip_length_noise_and_says_so():
    made = audio.generate(audio.TINY_RANDOM, "rain on a tin roof", 0.5625, seed=3)
    assert made.samples.shape == (2, 9000) and made.sample_rate == 16000 and made.pieces == 1
    assert made.placeholder and "noise" in made.notes[0]
    assert np.isfinite(made.samples).all() and made.samples.std() > 0
    again = audio.generate(audio.TINY_RANDOM, "rain on a tin roof", 0.5625, seed=3)
    other = audio.generate(audio.TINY_RANDOM, "rain on a tin roof", 0.5625, seed=4)
    assert np.array_equal(made.samples, again.samples) and not np.allclose(made.samples, other.samples)


@pytest.mark.slow
def test_long_clips_are_made_in_overlapping_crossfaded_pieces():
    made = audio.generate(audio.TINY_RANDOM, "wind", 3.0, seed=1)
    model = audio.load(audio.TINY_RANDOM)
    assert made.samples.shape == (2, 48000) and made.pieces == 4 and model.max_seconds == pytest.approx(1.024)
    assert any("4 overlapping pieces" in n for n in made.notes)
    first = audio.generate(audio.TINY_RANDOM, "wind", model.max_seconds, seed=1).samples
    overlap = 16384 // 4
    assert np.allclose(made.samples[:, :16384 - overlap], first[:, :16384 - overlap], atol=1e-6)


def test_crossfade_is_equal_power_and_covers_every_sample():
    starts = audio.piece_starts(total=250, window=100, overlap=20)
    assert starts == [0, 80, 160]
    ones = [np.ones((1, 100), np.float32)] * 3
    joined = audio.crossfade_pieces(ones, starts, 250, 20)
    assert joined.shape == (1, 250) and joined[0, :80].min() == 1.0
    t = (np.arange(20) + 0.5) / 20
    assert np.allclose(joined[0, 80:100], np.cos(t * np.pi / 2) + np.sin(t * np.pi / 2))
    assert audio.piece_starts(total=90, window=100, overlap=20) == [0]


@pytest.mark.slow
def test_a_model_folder_is_discovered_and_loaded_offline(saved_tiny, refvideo_home):
    install(saved_tiny, refvideo_home)
    assert audio.model_names() == [audio.TINY_RANDOM, "stable-audio-tiny"]
    loaded = audio.generate("stable-audio-tiny", "rain on a tin roof", 0.5625, seed=3, steps=audio.TINY_STEPS)
    built = audio.generate(audio.TINY_RANDOM, "rain on a tin roof", 0.5625, seed=3)
    assert not loaded.placeholder and loaded.notes == []
    assert np.allclose(loaded.samples, built.samples, atol=1e-5)  # the same seeded weights, read from disk


def test_missing_and_incomplete_models_name_the_folder_and_files(saved_tiny, refvideo_home):
    with pytest.raises(ModelNotFound, match="no audio model folder 'stable-audio-open-1.0'") as caught:
        audio.generate("stable-audio-open-1.0", "rain", 1.0, seed=0)
    assert str(refvideo_home / "models" / "diffusers") in str(caught.value)
    assert "model_index.json" in caught.value.fix and "vae/config.json" in caught.value.fix
    target = install(saved_tiny, refvideo_home, "broken")
    (target / "vae" / "config.json").unlink()
    shutil.rmtree(target / "tokenizer")
    with pytest.raises(ModelNotFound, match="is missing: vae/config.json, tokenizer/tokenizer.json") as caught:
        audio.generate("broken", "rain", 1.0, seed=0)
    assert str(target) in str(caught.value)


def test_a_corrupt_scheduler_config_is_named_with_the_fix(saved_tiny, refvideo_home):
    target = install(saved_tiny, refvideo_home, "corrupt")
    config = target / "scheduler" / "scheduler_config.json"
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(StorageError, match="is not valid JSON") as caught:
        audio.resolve("corrupt")
    assert str(config) in str(caught.value) and "Download the model folder again" in caught.value.fix


@pytest.mark.parametrize("name", ["/tmp", "../diffusers", "a/../../b"])
def test_audio_model_names_cannot_leave_the_model_folders(saved_tiny, refvideo_home, name):
    install(saved_tiny, refvideo_home)
    with pytest.raises(InputError) as caught:
        audio.resolve(name)
    assert caught.value.input == "model"


def test_pickle_weights_are_refused(saved_tiny, refvideo_home):
    target = install(saved_tiny, refvideo_home, "pickled")
    weights = target / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelNotFound, match="pickle-format weights"):
        audio.generate("pickled", "rain", 1.0, seed=0)
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == "StableAudioPipeline"


@pytest.mark.parametrize("prompt, seconds, seed, input_name", [
    ("", 1.0, 0, "prompt"),
    ("   ", 1.0, 0, "prompt"),
    ("rain", 0.0, 0, "frames"),
    ("rain", float("nan"), 0, "frames"),
    ("rain", 1.0, -1, "seed"),
    ("rain", 1.0, 1.5, "seed"),
])
def test_bad_requests_are_refused_before_loading(prompt, seconds, seed, input_name):
    with pytest.raises(InputError) as caught:
        audio.generate(audio.TINY_RANDOM, prompt, seconds, seed)
    assert caught.value.input == input_name


def test_an_interrupt_stops_generation():
    remove = host.add_progress_listener(lambda d, value, total: host.request_interrupt() if value == 2 else None)
    try:
        with pytest.raises(Interrupted):
            audio.generate(audio.TINY_RANDOM, "rain", 0.5, seed=0, steps=6)
    finally:
        remove()


def test_the_node_matches_the_clip_and_defaults_to_the_shot_prompt():
    frames = torch.zeros((9, 8, 8, 3))
    info = json.dumps({"prompt": "a dog runs across a beach", "style": {"style": "golden hour, 35mm"}})
    out = RefVideoAudio().generate(audio.TINY_RANDOM, "", frames, 16.0, 2, generation_info=info)
    (sound,) = out["result"]
    assert tuple(sound["waveform"].shape) == (1, 2, 9000) and sound["sample_rate"] == 16000
    assert "noise" in out["ui"]["text"][0]
    assert audio.shot_prompt("", info) == "a dog runs across a beach, golden hour, 35mm"
    with pytest.raises(InputError) as caught:
        RefVideoAudio().generate(audio.TINY_RANDOM, "", frames, 16.0, 2)
    assert caught.value.input == "prompt"
    with pytest.raises(InputError) as caught:
        RefVideoAudio().generate(audio.TINY_RANDOM, "rain", frames, 0.0, 2)
    assert caught.value.input == "fps"
