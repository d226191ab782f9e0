"""Small pieces the neural learners share: an MLP builder and a scoped torch thread count."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["mlp", "torch_threads"]


def mlp(n_in: int, net_arch, n_out: int, *, dtype, device="cpu", activation=nn.ReLU):
    """``Linear → activation`` for each hidden width in ``net_arch``, then ``Linear(·, n_out)``.

    ``net_arch = ()`` gives a linear map (a table, on one-hot inputs).
    """
    layers, width = [], n_in
    for h in net_arch:
        layers += [nn.Linear(width, h, dtype=dtype, device=device), activation()]
        width = h
    layers.append(nn.Linear(width, n_out, dtype=dtype, device=device))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``torch.set_num_threads(n)`` and restore the caller's count afterwards.

    Small networks on a 2-core machine are often faster on one thread; None leaves it as is.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
