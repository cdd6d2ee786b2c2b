"""What every load-test plot shares, so they read at a glance: legends below
the axes (never over a line or a bar), value axes from zero on a linear scale
(so 214 ms against 227 ms looks like the 6% it is, not like a gap) with room
above the highest value (a flat line is not drawn on the frame), one unit per
axis (each panel's label names it), and one way to write the PNG
(:func:`save`; tests replace it to look at the figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

HEADROOM = 0.08
"""Space above the highest value, as a share of it."""


def legend_below(
    ax: Axes, handles: list[Any] | None = None, labels: list[str] | None = None
) -> None:
    """The legend in one or two rows under ``ax``'s tick labels and x label,
    outside the data: its gap below the axes is in font sizes (``borderaxespad``),
    so it clears the x label on a short panel as on a tall one."""
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    ncol = len(handles) if len(handles) <= 3 else (len(handles) + 1) // 2
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        borderaxespad=4.5 if ax.get_xlabel() else 2.6,
        ncol=ncol,
        frameon=False,
        fontsize="small",
    )


def from_zero(ax: Axes, axis: str = "y") -> None:
    """A linear value axis from zero (nothing truncated) to a little above the
    highest value drawn (lines, bars, error bars and target lines alike); for
    values below zero (an added latency the relay took back), as far below."""
    ax.autoscale_view()
    lo, hi = (ax.dataLim.y0, ax.dataLim.y1) if axis == "y" else (ax.dataLim.x0, ax.dataLim.x1)
    lo, hi = min(lo, 0.0) * (1 + HEADROOM), max(hi, 0.0) * (1 + HEADROOM)
    if hi <= lo:
        hi = lo + 1.0
    if axis == "y":
        ax.set_yscale("linear")
        ax.set_ylim(lo, hi)
    else:
        ax.set_xscale("linear")
        ax.set_xlim(lo, hi)


def save(fig: Figure, path: Path) -> bool:
    """Lay ``fig`` out, write it to ``path`` (PNG, 100 dpi, legends included)
    and close it; True (the plot was made)."""
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True
