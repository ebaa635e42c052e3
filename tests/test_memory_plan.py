"""Memory planning: token counts, per-mode estimates, the auto choice and refusals that name a fix."""

from __future__ import annotations

import pytest

from refvideo.engine.errors import InputError
from refvideo.engine.memory_plan import GIB, MODE_ORDER, decide, estimate, tokens, vae_activations
from refvideo.models.wan_vace import reference_facts

HD = dict(width=1280, height=720, frames=81, references=1)
SD = dict(width=848, height=480, frames=81, references=1)


@pytest.fixture(scope="module")
def wan14():
    return reference_facts("Wan2.1-VACE-14B")


@pytest.fixture(scope="module")
def wan1():
    return reference_facts("Wan2.1-VACE-1.3B")


def test_published_sizes(wan1, wan14):
    # ~34 GB of bf16 transformer weights for 14B, an 11 GB bf16 text encoder
    assert 33 < wan14.transformer_params * 2 / 1e9 < 36
    assert 11 < wan14.text_encoder_params * 2 / 1e9 < 12
    assert 2.0e9 < wan1.transformer_params < 2.3e9
    assert (wan14.hidden, wan14.control_layers, wan1.hidden, wan1.control_layers) == (5120, 8, 1536, 15)


def test_tokens_of_one_14b_forward_at_720p(wan14):
    # the figure: 720p, 81 frames and one reference is 79,200 tokens
    assert tokens(wan14, 1280, 720, 81, 1) == 79_200
    assert tokens(wan14, 848, 480, 81, 0) == 21 * 30 * 53


def test_modes_get_leaner_in_order(wan14):
    peaks = [estimate(wan14, m, dtype="bf16", vae_tiling=False, cfg_batched=False, **HD).peak for m in MODE_ORDER]
    assert peaks == sorted(peaks, reverse=True) and peaks[0] > 45 * GIB
    batched = estimate(wan14, "model_offload", dtype="bf16", vae_tiling=False, cfg_batched=True, **HD)
    single = estimate(wan14, "model_offload", dtype="bf16", vae_tiling=False, cfg_batched=False, **HD)
    assert batched.activations > 1.9 * single.activations


def test_vae_tiling_cuts_the_decode_working_set(wan1):
    assert vae_activations(wan1, 1920, 1088, tiled=True) * 10 < vae_activations(wan1, 1920, 1088, tiled=False)
    # where decoding is the peak (1.3B, 1080p, a short clip), tiling lowers the whole estimate
    kw = dict(width=1920, height=1088, frames=9, references=1, dtype="bf16", cfg_batched=False)
    assert estimate(wan1, "model_offload", vae_tiling=True, **kw).peak < \
        estimate(wan1, "model_offload", vae_tiling=False, **kw).peak


def test_auto_takes_the_fastest_mode_that_fits(wan1, wan14):
    kw = dict(requested_mode="auto", cfg_batching="auto", accelerator=True, dtype="bf16", vae_tiling=False,
              guidance=5.0)
    assert decide(wan1, free=80 * GIB, **kw, **SD).mode == "none"
    assert decide(wan14, free=80 * GIB, **kw, **HD).mode == "none"  # ~64 GB: an 80 GB GPU holds it all
    assert decide(wan14, free=60 * GIB, **kw, **HD).mode == "model_offload"
    cap24 = decide(wan14, free=24 * GIB, **kw, **HD)  # the 24 GB target for 14B at 720p
    assert cap24.mode in ("group_offload", "sequential_offload") and not cap24.cfg_batched
    roomy = decide(wan1, free=80 * GIB, **kw, **SD)
    assert roomy.cfg_batched  # batching the guided/unguided passes fits
    assert not decide(wan1, free=80 * GIB, **{**kw, "guidance": 1.0}, **SD).cfg_batched  # no CFG, nothing to batch


def test_an_explicit_mode_that_cannot_fit_names_one_that_does(wan14):
    with pytest.raises(InputError) as err:
        decide(wan14, requested_mode="none", cfg_batching="off", free=24 * GIB, accelerator=True, dtype="bf16",
               vae_tiling=False, guidance=5.0, **HD)
    assert err.value.input == "memory_mode" and "group_offload" in err.value.fix


def test_nothing_fits_suggests_tiling_and_smaller_renders(wan14):
    with pytest.raises(InputError) as err:
        decide(wan14, requested_mode="auto", cfg_batching="auto", free=2 * GIB, accelerator=True, dtype="bf16",
               vae_tiling=False, guidance=5.0, **HD)
    assert "vae_tiling" in err.value.fix and "lower resolution" in err.value.fix


def test_forced_cfg_batching_that_cannot_fit_is_refused(wan14):
    with pytest.raises(InputError) as err:
        decide(wan14, requested_mode="group_offload", cfg_batching="on", free=24 * GIB, accelerator=True,
               dtype="bf16", vae_tiling=False, guidance=5.0, **HD)
    assert err.value.input == "cfg_batching"


def test_without_an_accelerator_only_ram_counts(wan1):
    got = decide(wan1, requested_mode="model_offload", cfg_batching="auto", free=64 * GIB, accelerator=False,
                 dtype="fp32", vae_tiling=False, guidance=5.0, **SD)
    assert got.mode == "none" and not got.cfg_batched and {e.mode for e in got.estimates} == {"none"}
    with pytest.raises(InputError) as err:
        decide(wan1, requested_mode="auto", cfg_batching="auto", free=8 * GIB, accelerator=False, dtype="fp32",
               vae_tiling=False, guidance=5.0, **SD)
    assert "RAM" in str(err.value)


def test_unknown_mode_is_refused(wan1):
    with pytest.raises(InputError) as err:
        decide(wan1, requested_mode="swap", cfg_batching="auto", free=80 * GIB, accelerator=True, dtype="bf16",
               vae_tiling=False, guidance=5.0, **SD)
    assert err.value.input == "memory_mode"


def test_group_offload_counts_the_text_encoder_while_it_encodes_and_the_resident_vae(wan14):
    group = estimate(wan14, "group_offload", dtype="bf16", vae_tiling=True, cfg_batched=False, **HD)
    text_encoder, vae = wan14.text_encoder_params * 2, wan14.vae_params * 4
    assert group.weights >= vae + min(text_encoder, wan14.block_params * 2 * 2)
    encode_stage = text_encoder + vae  # the encoder comes to the GPU whole, the VAE never leaves it
    assert group.peak >= encode_stage
    sequential = estimate(wan14, "sequential_offload", dtype="bf16", vae_tiling=True, cfg_batched=False, **HD)
    assert sequential.weights < text_encoder  # one leaf at a time, the text encoder too
