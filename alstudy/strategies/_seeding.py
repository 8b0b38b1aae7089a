"""Seeding helpers for strategies that train or sample with torch's global RNG.

Training code (weight initialisation, dropout, :func:`alstudy.train.fit`) draws from the
global RNG; these helpers derive a seed from the selection generator and run that code in a
forked RNG state, so a strategy is deterministic for a given generator and leaves the caller's
global RNG untouched.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["draw_seed", "seeded"]


def draw_seed(generator: torch.Generator) -> int:
    """A 62-bit integer seed drawn from ``generator``.

    Args:
        generator: CPU generator (advanced by one draw).

    Returns:
        A non-negative Python int.
    """
    return int(torch.randint(0, 2**62, (1,), generator=generator)[0])


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with the global RNG (CPU, and CUDA when ``device`` is CUDA) seeded to
    ``seed``, restoring the previous RNG state afterwards.

    Args:
        seed: Seed for :func:`torch.manual_seed`.
        device: Device whose RNG is forked as well (CUDA only).

    Yields:
        None.
    """
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
