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


def heatmap_image(
    matrix: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    title: str,
    row_axis: str = "query",
    col_axis: str = "key",
) -> np.ndarray:
    """One (q, k) attention matrix with every token labelled on both axes."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix {matrix.shape} does not match {len(row_labels)} row and {len(col_labels)} column labels"
        )
    n_rows, n_cols = matrix.shape
    width = float(np.clip(2.4 + 0.28 * n_cols, 4.5, 18.0))
    height = float(np.clip(1.9 + 0.26 * n_rows, 3.5, 16.0))
    fontsize = 9 if max(n_rows, n_cols) <= 40 else 7
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(
        matrix, cmap=CMAP, vmin=0.0, vmax=max(float(matrix.max()), 1e-6), aspect="auto", interpolation="nearest"
    )
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


# The page draws its download and fullscreen buttons over the top-right corner of every picture: the head
# grid keeps a band of this height (in pixels at DPI) free above its plots, and its title on the left of it.
ICON_BAND_PX = 44
TITLE_WIDTH = 0.68  # the share of the picture's width the grid's title may use (the rest is the buttons')


def wrap_title(title: str, max_chars: int) -> list[str]:
    """`title` in lines of at most about `max_chars` characters, broken at its " · " separators, else at spaces."""
    lines: list[str] = []
    for part in str(title).split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= max_chars:
            lines[-1] += " · " + part
            continue
        words, line = part.split(" "), ""
        for word in words:
            if line and len(line) + 1 + len(word) > max_chars:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return lines


def head_grid_image(
    stack: np.ndarray, title: str, selected: int | None = None, columns: int | None = None
) -> np.ndarray:
    """All heads of one layer, (h, q, k), as small multiples; the selected head (0-based) is framed in red.

    The title sits at the top left, wrapped to the left `TITLE_WIDTH` of the picture, above a band of at least
    `ICON_BAND_PX` that the plots leave free: the page's buttons in the top-right corner cover no text.
    """
    stack = np.asarray(stack, dtype=np.float32)
    heads = stack.shape[0]
    if columns is None:
        columns = 2 if heads <= 4 else 4
    columns = max(1, min(columns, heads))
    rows = -(-heads // columns)
    width = 2.3 * columns + 0.3
    fontsize = 10
    # DejaVu Sans averages about 0.6 em per character; the title's lines stay within TITLE_WIDTH.
    lines = wrap_title(plot_label_title(title), max(12, int(TITLE_WIDTH * width * 72 / (0.6 * fontsize))))
    band = max(ICON_BAND_PX, 8 + round(len(lines) * 1.25 * fontsize * DPI / 72))  # pixels
    height = 2.3 * rows + 0.2 + band / DPI
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, 1 - band / (height * DPI)))
    fig.text(0.01, 1 - 4 / (height * DPI), "\n".join(lines), ha="left", va="top", fontsize=fontsize)
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= heads:
            ax.set_axis_off()
            continue
        ax.imshow(
            stack[index],
            cmap=CMAP,
            vmin=0.0,
            vmax=max(float(stack[index].max()), 1e-6),
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"head {index + 1}", fontsize=9, color="crimson" if index == selected else "black")
        if index == selected:
            for spine in ax.spines.values():
                spine.set_edgecolor("crimson")
                spine.set_linewidth(3)
    return figure_to_rgb(fig)


__all__ = [
    "ICON_BAND_PX",
    "TITLE_WIDTH",
    "figure_to_rgb",
    "heatmap_image",
    "head_grid_image",
    "plot_label",
    "plot_label_title",
    "wrap_title",
]


def head_values_image(values: dict, titles: dict, colorbar_label: str, title: str) -> np.ndarray:
    """One layer x head grid per family of `values` {family: [[value per head] per layer]}, on one diverging
    colour scale centred on 0, every value printed in its cell."""
    families = list(values)
    arrays = {family: np.asarray(values[family], dtype=np.float32) for family in families}
    scale = max([float(np.abs(a).max()) for a in arrays.values()] + [1e-6])
    n_layers = max(a.shape[0] for a in arrays.values())
    n_heads = max(a.shape[1] for a in arrays.values())
    # Small enough to be shown at about its natural size beside a table (cells of ~0.45 inch).
    fig = Figure(
        figsize=(len(families) * (0.45 + 0.45 * n_heads) + 1.0, 1.1 + 0.45 * n_layers), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    for ax, family in zip(axes, families):
        grid = arrays[family]
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto", interpolation="nearest")
        for (layer, head), value in np.ndenumerate(grid):
            ax.text(
                head,
                layer,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if abs(value) > 0.6 * scale else "black",
            )
        ax.set_xticks(range(grid.shape[1]), [f"H{h + 1}" for h in range(grid.shape[1])], fontsize=8)
        ax.set_yticks(range(grid.shape[0]), [f"L{layer + 1}" for layer in range(grid.shape[0])], fontsize=8)
        ax.set_title(titles.get(family, family), fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.9).set_label(colorbar_label, fontsize=8)
    fig.suptitle(plot_label_title(title), fontsize=9)
    return figure_to_rgb(fig)
