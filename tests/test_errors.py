"""Error helpers: recognising an accelerator out-of-memory error."""

from __future__ import annotations

import torch

from refvideo.engine.errors import is_out_of_memory


def test_out_of_memory_errors_are_recognised_and_others_are_not():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert not is_out_of_memory(RuntimeError("size mismatch for transformer.blocks.0.attn1.to_q.lora_A.weight"))
    assert not is_out_of_memory(ValueError("memory_mode 'x' is not valid"))
