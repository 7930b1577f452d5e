"""Batch-size search and out-of-memory advice."""

from __future__ import annotations

import pytest

from pipelines.ml.lora import find_batch_size, is_oom, oom_advice


def test_halves_until_the_batch_fits():
    tried = []

    def fits(batch: int) -> None:  # a device with room for 12 examples
        tried.append(batch)
        if batch > 12:
            raise MemoryError(f"{batch} examples do not fit")

    assert find_batch_size(fits, 64) == 8
    assert tried == [64, 32, 16, 8]


def test_other_errors_and_the_smallest_batch_are_not_swallowed():
    def broken(batch: int) -> None:
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):
        find_batch_size(broken, 8)

    def never(batch: int) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(RuntimeError, match="out of memory"):
        find_batch_size(never, 4)


def test_oom_advice_names_what_to_change():
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    advice = oom_advice("lora", 8, checkpointing=False)
    assert "lower the batch size" in advice and "gradient checkpointing" in advice and "QLoRA" in advice
    assert "QLoRA" not in oom_advice("qlora", 1, checkpointing=True)
