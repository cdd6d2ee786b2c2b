"""What every load-test plot shares, so they read at a glance: legends below
the axes (never over a line or a bar), value axes from zero on a linear scale
(so 214 ms against 227 ms looks like the 6% it is), one unit per axis."""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes


def legend_below(
    ax: Axes, handles: list[Any] | None = None, labels: list[str] | None = None
) -> None:
    """The legend in one or two rows under ``ax``'s x label, outside the data."""
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    ncol = len(handles) if len(handles) <= 3 else (len(handles) + 1) // 2
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=ncol,
        frameon=False,
        fontsize="small",
    )


def from_zero(ax: Axes, axis: str = "y") -> None:
    """A linear value axis that starts at zero (nothing truncated)."""
    if axis == "y":
        ax.set_yscale("linear")
        ax.set_ylim(bottom=0)
    else:
        ax.set_xscale("linear")
        ax.set_xlim(left=0)
