"""Part 3: cold start - process start to first training step of the train component, against ``import tensorflow``.

Candidates, each a fresh process (``TF_CPP_MIN_LOG_LEVEL=2``), interleaved round by round:

* ``import_tf``: ``python -c "import tensorflow"`` (the reference);
* ``import_tf_keras``: ``python -c "import tensorflow, tf_keras"`` (what every Keras task needs anyway);
* ``import_train``: ``python -c "import tfpipe.components.train"`` (the component's imports, nothing run);

  each import process prints a line once its import is done, so both "imported" and "exited" are timed (a
  process that has imported TensorFlow takes a few hundred ms more to exit);
* ``train``: ``python -m tfpipe.components.train --task=digits --model_dir=<fresh dir> --train_steps=1
  --steps_per_loop=1``, timed to three points: the first ``train | step:`` line on stdout (the controller's
  "training until ..." line, printed before the first step runs), the first line reporting a finished step
  (``train | step: 1 | target: ...``), and process exit (after the final checkpoint and completion marker);
* ``compile``: ``python -m tfpipe.pipelines.cli compile --backend gke ... -o <file>``, timed to exit: writing a
  pipeline never imports TensorFlow, so it should cost a fraction of ``import tensorflow``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from bench import common
from bench import report
from bench.parts import Context, Part, register

SETTINGS: Dict[str, Dict[str, Any]] = {
    "tiny": {"reps": 1, "candidates": ("import_tf", "train", "compile")},
    "quick": {"reps": 4, "candidates": ("import_tf", "train", "compile")},
    "full": {"reps": 7, "candidates": ("import_tf", "import_tf_keras", "import_train", "train", "compile")},
}
GOAL_MARGIN_S = 1.0
GOALS = {"cold_start": "train: process start → first finished step ≤ `import tensorflow` + 1 s"}
FIRST_LINE = re.compile(r"train \| step:")
FIRST_STEP = re.compile(r"train \| step:\s+\d+ \| target:")
IMPORTED = "bench: imported"
FIRST_LOOP = re.compile(r"first loop: ([0-9.]+) s")


def _command(candidate: str, model_dir: str) -> List[str]:
    imports = {"import_tf": "tensorflow", "import_tf_keras": "tensorflow, tf_keras", "import_train": "tfpipe.components.train"}
    if candidate in imports:
        return [sys.executable, "-c", f"import {imports[candidate]}; print('{IMPORTED}', flush=True)"]
    if candidate == "train":
        return [sys.executable, "-m", "tfpipe.components.train", "--task=digits", f"--model_dir={model_dir}",
                "--train_steps=1", "--steps_per_loop=1"]
    if candidate == "compile":
        return [sys.executable, "-m", "tfpipe.pipelines.cli", "compile", "--backend", "gke", "--image",
                "registry.example.com/tfpipe:bench", "--train-resources", "gpu=l4:1", "-o", f"{model_dir}.yaml"]
    raise ValueError(candidate)


def _time_process(command: List[str], timeout_s: float = 300.0) -> Dict[str, Any]:
    """Runs ``command``; returns seconds to exit and to the first matching stdout lines."""
    env = common.child_env()
    first_line: Optional[float] = None
    imported: Optional[float] = None
    first_step: Optional[float] = None
    first_loop_s: Optional[float] = None
    t0 = time.perf_counter()
    process = subprocess.Popen(command, cwd=str(common.REPO_ROOT), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, bufsize=1)
    assert process.stdout is not None
    for line in process.stdout:
        now = time.perf_counter() - t0
        if imported is None and line.startswith(IMPORTED):
            imported = now
        if first_line is None and FIRST_LINE.search(line):
            first_line = now
        if first_step is None and FIRST_STEP.search(line):
            first_step = now
            match = FIRST_LOOP.search(line)
            first_loop_s = float(match.group(1)) if match else None
    code = process.wait(timeout_s)
    exit_s = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{command} exited with {code}")
    return {"exit_s": exit_s, "imported_s": imported, "first_log_s": first_line, "first_step_s": first_step, "first_loop_reported_s": first_loop_s}


def run(ctx: Context) -> Dict[str, Any]:
    settings = ctx.settings(SETTINGS)
    candidates = list(settings["candidates"])
    scratch = ctx.scratch_dir / "cold_start"
    scratch.mkdir(parents=True, exist_ok=True)
    _time_process(_command("import_tf", ""))  # Warm the page cache (shared libraries, .pyc) first.
    _time_process(_command("train", str(scratch / "warm")))
    samples: Dict[str, List[Dict[str, Any]]] = {c: [] for c in candidates}
    for r in range(settings["reps"]):
        for candidate in common.rotations(candidates, r):
            answer = _time_process(_command(candidate, str(scratch / f"run-{r}")))
            answer["round"] = r
            samples[candidate].append(answer)
        common.log(f"cold_start: round {r + 1}/{settings['reps']} done")
    return summarize(samples, settings)


def summarize(samples: Dict[str, List[Dict[str, Any]]], settings: Dict[str, Any]) -> Dict[str, Any]:
    stats = {}
    for candidate, rows in samples.items():
        stats[candidate] = {
            metric: common.spread([row[metric] for row in rows])
            for metric in ("exit_s", "imported_s", "first_log_s", "first_step_s", "first_loop_reported_s")
            if any(row.get(metric) is not None for row in rows)
        }
    # train's milestones minus import tensorflow's, paired per round: the first log line and the first step
    # against "imported", exit against exit.
    over_import: Dict[str, Optional[float]] = {}
    if "train" in samples and "import_tf" in samples:
        for metric, base_metric in (("first_log_s", "imported_s"), ("first_step_s", "imported_s"),
                                    ("exit_s", "exit_s")):
            base = {row["round"]: row[base_metric] for row in samples["import_tf"] if row.get(base_metric) is not None}
            diffs = [row[metric] - base[row["round"]] for row in samples["train"]
                     if row.get(metric) is not None and row["round"] in base]
            over_import[metric] = common.median(diffs)
    compile_over_import = None
    if "compile" in samples and "import_tf" in samples:
        base = {row["round"]: row["exit_s"] for row in samples["import_tf"]}
        compile_over_import = common.median([row["exit_s"] / base[row["round"]] for row in samples["compile"]
                                             if row["round"] in base])
    first_step_over = over_import.get("first_step_s")
    return {
        "settings": dict(settings),
        "stats": stats,
        "train_minus_import_tf_s": over_import,
        "compile_over_import_tf": compile_over_import,
        "samples": samples,
        "goals": {"cold_start": {
            "goal": GOALS["cold_start"],
            "met": None if first_step_over is None else first_step_over <= GOAL_MARGIN_S,
            "exit_met": None if over_import.get("exit_s") is None else over_import["exit_s"] <= GOAL_MARGIN_S,
            "compared": "train first finished step − import tensorflow imported; exit − exit (paired per round)",
        }},
    }


def markdown(result: Dict[str, Any]) -> str:
    rows = []
    names = {
        "import_tf": '`python -c "import tensorflow"`',
        "import_tf_keras": '`python -c "import tensorflow, tf_keras"`',
        "import_train": '`python -c "import tfpipe.components.train"`',
        "train": "`python -m tfpipe.components.train --task=digits --train_steps=1 --steps_per_loop=1`",
        "compile": "`tfpipe compile --backend gke --train-resources gpu=l4:1 -o p.yaml`",
    }
    for candidate, stats in result["stats"].items():
        rows.append([
            names.get(candidate, candidate),
            report.fmt_seconds(stats.get("imported_s", {}).get("median")),
            report.fmt_seconds(stats.get("first_log_s", {}).get("median")),
            report.fmt_seconds(stats.get("first_step_s", {}).get("median")),
            report.fmt_seconds(stats.get("first_loop_reported_s", {}).get("median")),
            report.fmt_seconds(stats.get("exit_s", {}).get("median")),
        ])
    over = result["train_minus_import_tf_s"]
    goal = result["goals"]["cold_start"]
    return "\n".join([
        f"Fresh processes, TF_CPP_MIN_LOG_LEVEL=2, {result['settings']['reps']} interleaved rounds after one "
        "unmeasured warm-up of each (page cache warm); medians.",
        "",
        report.table(["process", "to imported", "to first `train \\| step:` line", "to first finished step",
                      "first loop (as the controller reports it)", "to exit"], rows),
        "",
        f"train − import tensorflow (paired per round): first `train \\| step:` line − imported "
        f"{report.fmt_seconds(over.get('first_log_s'))}, first finished step − imported "
        f"{report.fmt_seconds(over.get('first_step_s'))}, exit − exit {report.fmt_seconds(over.get('exit_s'))}.",
        "",
        (f"`tfpipe compile` to exit / `import tensorflow` to exit (paired per round): "
         f"{result['compile_over_import_tf']:.2f}× (compiling never imports TensorFlow)."
         if result.get("compile_over_import_tf") is not None else ""),
        "",
        f"Goal: {goal['goal']}: {report.verdict(goal['met'])} (to exit: {report.verdict(goal.get('exit_met'))}).",
    ])


def plot(ax: Any, result: Dict[str, Any]) -> None:
    labels, exits, firsts = [], [], []
    for candidate, stats in result["stats"].items():
        labels.append(candidate)
        exits.append(stats.get("exit_s", {}).get("median") or 0)
        first = stats.get("first_step_s") or stats.get("imported_s") or {}
        firsts.append(first.get("median") or 0)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], firsts, 0.4, label="to imported / first finished step")
    ax.bar([x + 0.2 for x in xs], exits, 0.4, label="to exit")
    imported = result["stats"].get("import_tf", {}).get("imported_s", {}).get("median")
    if imported:
        ax.axhline(imported + GOAL_MARGIN_S, color="k", ls=":", lw=1, label="goal: TF imported + 1 s")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("seconds (median)")
    ax.set_title("Cold start")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


register(Part(name="cold_start", title="3. Cold start", order=30, run=run, markdown=markdown, plots=[plot],
              goals=GOALS))
