"""Joining clips: cuts, crossfades and clear refusals (engine and the JoinClips node)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refvideo.engine.errors import InputError
from refvideo.engine.video.join import join_clips
from refvideo.nodes.join_clips import JoinClips


def constant(value: float, frames: int, height: int = 8, width: int = 12, channels: int = 3) -> np.ndarray:
    return np.full((frames, height, width, channels), value, np.float32)


def test_cut_concatenates_in_order():
    a, b, c = constant(0.1, 3), constant(0.5, 4), constant(0.9, 2)
    frames, fps = join_clips([a, b, c], [16.0, 16.0, None])
    assert frames.shape == (9, 8, 12, 3) and fps == 16.0
    assert np.allclose(frames[:, 0, 0, 0], [0.1] * 3 + [0.5] * 4 + [0.9] * 2)


def test_crossfade_blends_n_frames_at_each_join():
    a, b, c = constant(0.0, 5), constant(1.0, 8), constant(0.0, 5)
    frames, _ = join_clips([a, b, c], [16.0], transition="crossfade", crossfade_frames=3)
    assert frames.shape[0] == 5 + 8 + 5 - 2 * 3
    expected = [0, 0, 0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25, 0, 0]
    assert np.allclose(frames[:, 0, 0, 0], expected)


def test_the_node_takes_tensors_skips_unconnected_clips_and_returns_fps():
    a = torch.zeros((4, 8, 12, 3))
    b = torch.ones((4, 8, 12, 3))
    frames, fps = JoinClips().join(a, b, 24.0, "crossfade", 1, clip_4=torch.zeros((2, 8, 12, 3)), fps_2=24.0,
                                   fps_4=24.0)
    assert isinstance(frames, torch.Tensor) and tuple(frames.shape) == (4 + 4 + 2 - 2, 8, 12, 3)
    assert fps == 24.0
    assert torch.allclose(frames[3, 0, 0, 0], torch.tensor(0.5))


@pytest.mark.parametrize("clips, fps, kwargs, input_name, message", [
    ([constant(0, 3), constant(0, 3, height=16)], [16.0], {}, "clip_2", "clip_2 is 12x16 but clip_1 is 12x8"),
    ([constant(0, 3), constant(0, 3, channels=4)], [16.0], {}, "clip_2", "4 channels"),
    ([constant(0, 3)] * 3, [16.0, 16.0, 24.0], {}, "fps_3", "clip_3 runs at 24 fps but clip_1 at 16 fps"),
    ([constant(0, 3)], [16.0], {}, "clip_2", "joining needs 2 to 6"),
    ([constant(0, 3)] * 7, [16.0], {}, None, "joining needs 2 to 6"),
    ([constant(0, 4), constant(0, 5), constant(0, 4)], [16.0], {"transition": "crossfade", "crossfade_frames": 3},
     "crossfade_frames", "clip_2 has 5 frames, too few for a 3-frame crossfade on each side"),
    ([constant(0, 4)] * 2, [16.0], {"transition": "wipe"}, "transition", "'wipe' is not a transition"),
    ([constant(0, 4)] * 2, [16.0], {"transition": "crossfade", "crossfade_frames": 0}, "crossfade_frames",
     "at least 1 frame"),
    ([np.zeros((8, 8)), constant(0, 2)], [16.0], {}, "clip_1", "expects images shaped"),
    ([constant(0, 2)] * 2, [0.0], {}, "fps_1", "frames per second is not usable"),
])
def test_mismatches_are_refused_with_the_input_named(clips, fps, kwargs, input_name, message):
    with pytest.raises(InputError, match=message) as caught:
        join_clips(clips, fps, **kwargs)
    assert caught.value.input == input_name and caught.value.fix
