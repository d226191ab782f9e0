"""Input checks shared by the plotting modules: arrays by name, and the Axes to draw on."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes


def _to_numpy(name: str, x, *, ndim: int | Sequence[int] | None = None) -> np.ndarray:
    """float64 numpy copy of a tensor / array / list, with a rank check naming ``name``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be numeric array-like, got {type(x).__name__}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            ranks = " or ".join(str(n) for n in allowed)
            raise ValueError(f"`{name}` must have rank {ranks}, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN")
    return arr


def _new_axes(ax: Axes | None, figsize=(6, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    elif not isinstance(ax, Axes):
        raise TypeError(f"`ax` must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax
