"""Attention pictures as RGB arrays: one heatmap with token labels, and a grid of all heads of a layer.

Figures are built with `matplotlib.figure.Figure` on the Agg canvas, not through pyplot: nothing is
registered in pyplot's global figure list, so nothing accumulates per request, and concurrent requests
(Gradio runs handlers in threads) do not share pyplot state. Each figure is closed explicitly anyway.
"""

from __future__ import annotations

import unicodedata

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CMAP = "viridis"
DPI = 100
MAX_LABEL_CHARS = 14


def plot_label(token: str) -> str:
    """A token made safe for a matplotlib label: control/format characters escaped, `$` not mathtext."""
    out = []
    for ch in str(token):
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        elif ord(ch) > 0xFFFF:  # emoji and other astral characters: DejaVu Sans has no glyphs for them
            out.append(f"U+{ord(ch):X}")
        else:
            out.append(ch)
    label = "".join(out).replace("$", r"\$")
    if len(label) > MAX_LABEL_CHARS:
        label = label[: MAX_LABEL_CHARS - 1] + "…"
    return label


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """Draw `fig` on the Agg canvas and return its pixels as an (H, W, 3) uint8 array (what `gr.Image` shows).

    The figure is cleared and closed afterwards, also on error: do not use it again. Every picture of the
    Space (this module's and the Circuits tab's) ends with this call.
    """
    try:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
    finally:
        fig.clear()
        _close(fig)


def _close(fig: Figure) -> None:
    # Figures made with Figure() are unknown to pyplot; plt.close only matters for pyplot-made ones.
    import matplotlib.pyplot as plt

    plt.close(fig)


def heatmap_image(matrix: np.ndarray, row_labels: list[str], col_labels: list[str], title: str,
                  row_axis: str = "query", col_axis: str = "key") -> np.ndarray:
    """One (q, k) attention matrix with every token labelled on both axes."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix {matrix.shape} does not match {len(row_labels)} row and {len(col_labels)} column labels")
    n_rows, n_cols = matrix.shape
    width = float(np.clip(2.4 + 0.28 * n_cols, 4.5, 18.0))
    height = float(np.clip(1.9 + 0.26 * n_rows, 3.5, 16.0))
    fontsize = 9 if max(n_rows, n_cols) <= 40 else 7
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap=CMAP, vmin=0.0, vmax=max(float(matrix.max()), 1e-6), aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(n_cols), [plot_label(t) for t in col_labels], rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n_rows), [plot_label(t) for t in row_labels], fontsize=fontsize)
    ax.set_xlabel(f"{col_axis} (attended to)", fontsize=9)
    ax.set_ylabel(f"{row_axis} (attending)", fontsize=9)
    ax.set_title(plot_label_title(title), fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
    return figure_to_rgb(fig)


def plot_label_title(title: str) -> str:
    """Titles are the app's own words; only keep `$` from switching on mathtext."""
    return str(title).replace("$", r"\$")


def head_grid_image(stack: np.ndarray, title: str, selected: int | None = None, columns: int | None = None) -> np.ndarray:
    """All heads of one layer, (h, q, k), as small multiples; the selected head (0-based) is framed in red."""
    stack = np.asarray(stack, dtype=np.float32)
    heads = stack.shape[0]
    if columns is None:
        columns = 2 if heads <= 4 else 4
    columns = max(1, min(columns, heads))
    rows = -(-heads // columns)
    fig = Figure(figsize=(2.3 * columns + 0.3, 2.3 * rows + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= heads:
            ax.set_axis_off()
            continue
        ax.imshow(stack[index], cmap=CMAP, vmin=0.0, vmax=max(float(stack[index].max()), 1e-6), aspect="auto",
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"head {index + 1}", fontsize=9, color="crimson" if index == selected else "black")
        if index == selected:
            for spine in ax.spines.values():
                spine.set_edgecolor("crimson")
                spine.set_linewidth(3)
    fig.suptitle(plot_label_title(title), fontsize=10)
    return figure_to_rgb(fig)


__all__ = ["figure_to_rgb", "heatmap_image", "head_grid_image", "plot_label", "plot_label_title"]
