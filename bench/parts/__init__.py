"""The registry of benchmark parts.

A part is a module under ``bench/parts/`` that builds a :class:`Part` and calls :func:`register` at import time.
The runner (``bench/run.py``) runs the registered parts in ``order``, stores each one's result under
``parts.<name>`` in ``latest.json``, appends its Markdown section to ``latest.md`` and draws its plots into
``latest.png``.

To add a part (e.g. continuous-eval latency):

1. create ``bench/parts/continuous_eval.py`` with ``SETTINGS = {"tiny": {...}, "quick": {...}, "full": {...}}``,
   a ``run(ctx) -> dict`` (use ``bench.common.WorkerPool`` to measure in subprocesses and interleave
   candidates), a ``markdown(result) -> str`` and, optionally, plot functions ``(ax, result) -> None``;
2. call ``register(Part(name="continuous_eval", ...))`` at the bottom of it;
3. add its module name to ``PART_MODULES`` below (the slot is already there, commented out).

A part's result is a JSON-serialisable dict; put headline ratios at its top level and the raw samples below,
and list what it compares against in ``goals``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

# Modules that register a part, in the order they run.
PART_MODULES = [
    "bench.parts.controller_overhead",
    "bench.parts.checkpoint_io",
    "bench.parts.cold_start",
    "bench.parts.continuous_eval",
    "bench.parts.accelerators",
]


@dataclasses.dataclass
class Context:
    """What the runner hands to every part."""

    preset: str  # "tiny", "quick", "full", or "gpu" (only the parts that have it)
    out_dir: Path
    scratch_dir: Path  # A fresh local directory for checkpoints and logs, removed after the run unless kept.
    orbit_policy: str  # "install", "if-present" or "skip" (see bench.common.orbit_status)
    reps: Optional[int] = None  # Overrides each part's repetitions (`reps`, `*_reps`) when set.
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def settings(self, presets: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
        """A part's settings for this run's preset, with the repetition counts overridden when asked."""
        settings = dict(presets[self.preset])
        if self.reps is not None:
            for key in settings:
                if key == "reps" or key.endswith("_reps"):
                    settings[key] = self.reps
        return settings


@dataclasses.dataclass
class Part:
    """A benchmark part: how to run it and how to report it."""

    name: str
    title: str
    order: int
    run: Callable[[Context], Dict[str, Any]]
    markdown: Callable[[Dict[str, Any]], str]
    plots: List[Callable[[Any, Dict[str, Any]], None]] = dataclasses.field(default_factory=list)
    goals: Dict[str, str] = dataclasses.field(default_factory=dict)
    presets: tuple = ("tiny", "quick", "full")  # The presets it has settings for (`gpu`: for an accelerator).


PARTS: Dict[str, Part] = {}


def register(part: Part) -> Part:
    if part.name in PARTS:
        raise ValueError(f"benchmark part {part.name!r} registered twice")
    PARTS[part.name] = part
    return part


def load_parts() -> Dict[str, Part]:
    """Imports every part module and returns the registry, in run order."""
    for module in PART_MODULES:
        importlib.import_module(module)
    return dict(sorted(PARTS.items(), key=lambda item: item[1].order))


def parts_dir() -> Path:
    return Path(__file__).resolve().parent
