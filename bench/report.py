"""Formatting helpers shared by the parts' Markdown sections, and the PNG figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


def fmt(value: Optional[float], digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.{digits}g}"
    return f"{text}{unit}"


def fmt_seconds(value: Optional[float]) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def fmt_ratio(value: Optional[float], low: Optional[float] = None, high: Optional[float] = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.3f}×"
    if low is not None and high is not None:
        text += f" ({low:.3g}–{high:.3g})"
    return text


def verdict(ok: Optional[bool]) -> str:
    return "–" if ok is None else ("✅ meets" if ok else "❌ misses")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_figure(path: Path, plots: List[Tuple[str, Callable[[Any, Dict[str, Any]], None], Dict[str, Any]]]) -> Optional[str]:
    """Draws each ``(title, plot_fn, result)`` into one PNG; returns None, or why no PNG was written."""
    if not plots:
        return "no part produced a plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    cols = 2 if len(plots) > 1 else 1
    rows = (len(plots) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.2 * rows), squeeze=False)
    for ax, (title, plot_fn, result) in zip(axes.flat, plots):
        try:
            plot_fn(ax, result)
        except Exception as error:  # A broken plot must not lose the numbers.
            ax.text(0.5, 0.5, f"plot failed: {error}", ha="center", va="center", wrap=True)
        if not ax.get_title():
            ax.set_title(title)
    for ax in list(axes.flat)[len(plots):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
