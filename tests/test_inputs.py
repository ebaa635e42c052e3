"""Bringing a user's files into the input folder never overwrites a different file."""

from __future__ import annotations

import pytest

from refvideo.engine.errors import InputError
from refvideo.headless.inputs import bring_inputs, point_inputs_at


def test_bring_inputs_copies_reuses_and_renames(tmp_path):
    folder = tmp_path / "input"
    mine = tmp_path / "mara.png"
    mine.write_bytes(b"first")
    assert bring_inputs([str(mine)], folder) == {"mara.png": "mara.png"}
    assert (folder / "mara.png").read_bytes() == b"first"
    assert bring_inputs([str(mine)], folder) == {"mara.png": "mara.png"}  # identical: reused

    mine.write_bytes(b"second")
    renamed = bring_inputs([str(mine)], folder)
    assert renamed == {"mara.png": "mara (1).png"}
    assert (folder / "mara.png").read_bytes() == b"first"
    assert (folder / "mara (1).png").read_bytes() == b"second"

    workflow = {"1": {"class_type": "X", "inputs": {"image_1": "mara.png", "label_1": "Mara", "n": 3}}}
    assert point_inputs_at(workflow, renamed) == [("1", "image_1", "mara (1).png")]
    assert workflow["1"]["inputs"]["image_1"] == "mara (1).png"


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError) as info:
        bring_inputs([str(tmp_path / "nope.png")], tmp_path / "input")
    assert info.value.input == "--input"
