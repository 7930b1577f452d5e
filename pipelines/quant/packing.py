"""Dense storage for low-bit weights.

Ternary: a ternary digit (trit) has 3 states, and 3**5 = 243 <= 256, so 5 trits fit in one
byte: byte = sum_i (t_i + 1) * 3**i. That is 8 / 5 = 1.6 bits per weight, close to the
log2(3) = 1.58 bits of information a ternary weight carries (2-bit packing would give 2.0).
Unpacking is one table lookup per byte.

int4: two signed 4-bit values per byte, low nibble first, each stored as value + 8 (0..15).
"""

from __future__ import annotations

import math

import torch

TRITS_PER_BYTE = 5
_POWERS = torch.tensor([3**i for i in range(TRITS_PER_BYTE)], dtype=torch.int32)


def _trit_table() -> torch.Tensor:
    """[243, 5] int8: the 5 trits (-1, 0, 1) a byte value stands for."""
    codes = torch.arange(3**TRITS_PER_BYTE, dtype=torch.int32).unsqueeze(1)
    return ((codes // _POWERS) % 3 - 1).to(torch.int8)


_TRIT_TABLE = _trit_table()


def packed_ternary_size(numel: int) -> int:
    return math.ceil(numel / TRITS_PER_BYTE)


def pack_ternary(t: torch.Tensor) -> torch.Tensor:
    """Flatten values in {-1, 0, 1} into uint8 bytes, 5 per byte (the tail padded with 0)."""
    flat = t.reshape(-1).to(torch.int32)
    if flat.numel() and (flat.abs() > 1).any():
        raise ValueError("pack_ternary takes only -1, 0 and 1")
    pad = packed_ternary_size(flat.numel()) * TRITS_PER_BYTE - flat.numel()
    digits = torch.cat([flat + 1, torch.ones(pad, dtype=torch.int32)]).reshape(-1, TRITS_PER_BYTE)
    return (digits * _POWERS.to(digits.device)).sum(dim=1).to(torch.uint8)


def unpack_ternary(packed: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """The inverse of ``pack_ternary``: int8 values in {-1, 0, 1} of the given shape."""
    numel = math.prod(shape)
    table = _TRIT_TABLE.to(packed.device)
    return table[packed.long()].reshape(-1)[:numel].reshape(shape)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Signed values in [-8, 7] -> uint8, two per byte (an odd count is padded with 0)."""
    flat = q.reshape(-1).to(torch.int16) + 8
    if flat.numel() and ((flat < 0) | (flat > 15)).any():
        raise ValueError("pack_int4 takes values in [-8, 7]")
    if flat.numel() % 2:
        flat = torch.cat([flat, torch.full((1,), 8, dtype=torch.int16, device=flat.device)])
    pairs = flat.reshape(-1, 2)
    return (pairs[:, 0] | (pairs[:, 1] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    numel = math.prod(shape)
    p = packed.to(torch.int16)
    values = torch.stack([p & 0xF, (p >> 4) & 0xF], dim=1).reshape(-1)[:numel] - 8
    return values.to(torch.int8).reshape(shape)
