"""Image encoders from models/clip_vision/: tiny random CLIP and DINOv2 vision models written the way users
hold them (ComfyUI single safetensors files without a config, and transformers folders), loaded through
the real path and compared with the same model called directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

from refvideo.engine.errors import InputError, ModelNotFound
from refvideo.models import image_encoders
from refvideo.models.model_folder import read_header

CLIP = dict(hidden_size=128, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8, projection_dim=24, hidden_act="gelu")
DINO = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8, mlp_ratio=2)


@pytest.fixture
def clip_vision(refvideo_home):
    folder = refvideo_home / "models" / "clip_vision"
    folder.mkdir(parents=True)
    return folder


def tiny_clip() -> CLIPVisionModelWithProjection:
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP)).eval()


def tiny_dino() -> Dinov2Model:
    torch.manual_seed(0)
    return Dinov2Model(Dinov2Config(**DINO)).eval()


def pictures(size: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).random((n, size, size, 3)).astype(np.float32)


def single_file(model: torch.nn.Module, path) -> None:
    """The model's weights alone, as ComfyUI's clip_vision files hold them (no config), in the published key
    layout: DINOv2 files name attention ``attention.attention.query`` ... and the SwiGLU feed-forward
    ``weights_in`` (gate and up stacked) / ``weights_out``, as the released checkpoints do."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if isinstance(model, Dinov2Model):
        published = {}
        for key, value in state.items():
            for new, old in (("attention.q_proj", "attention.attention.query"),
                             ("attention.k_proj", "attention.attention.key"),
                             ("attention.v_proj", "attention.attention.value"),
                             ("attention.o_proj", "attention.output.dense"), ("mlp.down_proj", "mlp.weights_out")):
                key = key.replace(new, old)
            published[key] = value
        for key in [k for k in published if ".mlp.gate_proj." in k]:
            up = key.replace("gate_proj", "up_proj")
            published[key.replace("gate_proj", "weights_in")] = torch.cat([published.pop(key), published.pop(up)])
        state = published
    save_file(state, str(path))


def test_clip_single_file_is_built_from_its_shapes_and_embeds_like_the_model(clip_vision):
    model = tiny_clip()
    single_file(model, clip_vision / "tiny_clip.safetensors")
    assert image_encoders.list_encoders() == ["tiny_clip.safetensors"]
    encoder = image_encoders.load_encoder("tiny_clip.safetensors")
    assert (encoder.family, encoder.image_size) == ("clip", 32)
    images = pictures(32)
    with torch.no_grad():
        direct = model(pixel_values=encoder.pixel_values(images)).image_embeds.numpy()
    np.testing.assert_array_equal(encoder.embed(images), direct)
    assert direct.shape == (3, 24)


def test_dinov2_single_file_and_folder_embed_like_the_model(clip_vision):
    model = tiny_dino()
    single_file(model, clip_vision / "tiny_dino.safetensors")
    assert "encoder.layer.0.attention.attention.query.weight" in read_header(clip_vision / "tiny_dino.safetensors")
    model.save_pretrained(clip_vision / "tiny-dinov2")
    images = pictures(image_encoders.DINO_INPUT, 2)
    with torch.no_grad():
        direct = model(pixel_values=image_encoders.load_encoder("tiny_dino.safetensors").pixel_values(images))
    for name in ("tiny_dino.safetensors", "tiny-dinov2"):
        encoder = image_encoders.load_encoder(name)
        assert encoder.family == "dinov2"
        np.testing.assert_array_equal(encoder.embed(images), direct.pooler_output.numpy())


def test_clip_folder_loads_offline_with_its_processor_values(clip_vision):
    model = tiny_clip()
    model.save_pretrained(clip_vision / "tiny-clip")
    encoder = image_encoders.load_encoder("tiny-clip")
    images = pictures(32, 2)
    with torch.no_grad():
        direct = model(pixel_values=encoder.pixel_values(images)).image_embeds.numpy()
    np.testing.assert_array_equal(encoder.embed(images), direct)
    np.testing.assert_allclose(encoder.pixel_values(images)[0, 0].numpy(),
                               (images[0, ..., 0] - image_encoders.CLIP_MEAN[0]) / image_encoders.CLIP_STD[0],
                               rtol=1e-6)


def test_published_clip_widths_get_their_head_counts():
    shapes = {"vision_model.embeddings.patch_embedding.weight": [1280, 3, 14, 14],
              "vision_model.embeddings.position_embedding.weight": [257, 1280],
              "vision_model.encoder.layers.0.mlp.fc1.weight": [5120, 1280],
              "vision_model.encoder.layers.31.mlp.fc1.weight": [5120, 1280],
              "visual_projection.weight": [1024, 1280]}
    config = image_encoders.clip_config(shapes)
    assert config == dict(hidden_size=1280, num_channels=3, patch_size=14, num_attention_heads=16, hidden_act="gelu",
                          image_size=224, num_hidden_layers=32, intermediate_size=5120, projection_dim=1024)


def test_bad_names_and_files_are_refused(clip_vision):
    with pytest.raises(ModelNotFound, match="clip_vision"):
        image_encoders.load_encoder("missing.safetensors")
    with pytest.raises(InputError, match="pickle"):
        image_encoders.load_encoder("model.ckpt")
    with pytest.raises(InputError):
        image_encoders.load_encoder("../escape.safetensors")
    save_file({"some.weight": torch.zeros(2, 2)}, str(clip_vision / "other.safetensors"))
    with pytest.raises(ModelNotFound, match="neither a CLIP nor a DINOv2"):
        image_encoders.load_encoder("other.safetensors")


def test_dinov2_with_swiglu_feed_forward_loads_from_its_shapes(clip_vision):
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**{**DINO, "mlp_ratio": 4, "use_swiglu_ffn": True})).eval()  # as DINOv2-giant
    single_file(model, clip_vision / "tiny_dino_giant.safetensors")
    encoder = image_encoders.load_encoder("tiny_dino_giant.safetensors")
    assert encoder.model.config.use_swiglu_ffn
    images = pictures(image_encoders.DINO_INPUT, 2)
    with torch.no_grad():
        direct = model(pixel_values=encoder.pixel_values(images)).pooler_output.numpy()
    np.testing.assert_array_equal(encoder.embed(images), direct)
