"""Part 4: continuous-eval latency - how soon an evaluator in its own process notices a new checkpoint, and how
soon it exits once training is over.

A trainer process saves a checkpoint every ~0.5 s (a tiny tf_keras MLP: a 0.45 s sleep, one Adam step, a save;
controller_core ``Controller.train`` with ``steps_per_loop=1`` and ``checkpoint_interval=1``, so training also writes
``training_complete.json`` at the end) while one evaluator process watches the directory. The cadence is
deliberately not a divisor of the poll intervals: with 0.5 s against a 1 s poll every run locks onto one phase and a
single round measures one random phase, not the poll's typical delay. Candidates (the evaluator):

* ``controller_p1.0`` / ``controller_p0.2``: controller_core ``Controller.evaluate_continuously(policy="all",
  poll_interval=1.0 | 0.2)`` (1.0 s is the product default), stopping on the completion marker;
* ``iterator_T1``: the baseline, Orbit's mechanism with Model Garden's stop rule::

      for path in tf.train.checkpoints_iterator(dir, timeout=1, timeout_fn=lambda: restored_step >= train_steps):
          checkpoint.restore(path).expect_partial(); restored_step = step; evaluator.evaluate(...)

  T = 1 s is the best case for it (Model Garden's default is ``continuous_eval_timeout`` = 3600 s, i.e. the
  evaluator outlives training by up to an hour). With T ≤ 1 s ``wait_for_new_checkpoint`` never sleeps (its
  ``time.time() + 1 > stop_time`` test is true at once), so the loop re-reads the ``checkpoint`` state file
  back to back: a busy poll, whose CPU cost is reported;
* on gs:// only, ``iterator_T1_statcache``: the same with TensorFlow's default GCS stat cache (5 s), to show what
  the baseline needs: it reads the ``checkpoint`` state file, whose cached size truncates the new content.
  ``iterator_T1`` itself runs with ``GCS_STAT_CACHE_MAX_AGE=0``; the controller candidates run with TensorFlow's
  defaults (the emulator's ``GCS_STAT_CACHE_MAX_AGE`` / ``GCS_MATCHING_PATHS_CACHE_MAX_AGE`` removed), which is
  what users get: the watcher lists ``ckpt-*.index`` and never stats a file it has seen before.

Configurations: ``local`` (local disk, evaluation takes ms), ``local_slow_eval`` (evaluation sleeps longer than the
checkpoint interval: the baseline skips checkpoints, policy "all" queues them) and ``gcs`` (gs:// through the test
GCS emulator, ``tests/support/gcs_emulator.py``).

Timestamps are ``time.time()`` on one machine: the trainer's right after ``CheckpointManager.save`` returned
("landed"), the evaluator's on entering its evaluator's ``evaluate()`` ("evaluation started"), and the parent's when
``os.wait4`` returns for the evaluator process ("exit"). The evaluator also reports when each step first appeared
in a listing (controller: ``checkpoint_watcher.list_checkpoints``; baseline: ``tf.train.latest_checkpoint``),
how many polls it made and their time, and its CPU time while watching. Each evaluator is a fresh process started
before its run (TensorFlow imported, the evaluation traced and one restore done on a scratch checkpoint) that waits
for a "go"; the trainer starts a random 0.3-1.3 s later (seeded), so each run samples a random poll phase. The
runs of a round go one at a time, configurations and candidates rotated round by round.

This module runs the part; its candidates, configurations and presets are `bench/continuous_eval/settings.py`, the
trainer and evaluator processes `bench/continuous_eval/children.py`, the summary, table and plots
`bench/continuous_eval/report.py`.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from bench import common
from bench import report
from bench.parts import Context, Part, register
from bench.continuous_eval.report import markdown, plot_exit, plot_noticed, summarize
from bench.continuous_eval.settings import (
    BASELINE_CANDIDATES, CONFIGS, CONTROLLER_CANDIDATES, EXIT_GRACE_S, GCS_CACHE_VARS, GOALS, LEAD_MIN_S, LEAD_SEED,
    LEAD_SPAN_S, MODEL_DIR_NAME, READY_TIMEOUT_S, SETTINGS,
)


# ---------------------------------------------------------------------------------------------------- parent


def _candidate_env(candidate: str, emulator_env: Optional[Dict[str, str]]) -> Dict[str, str]:
    """The evaluator's environment: the emulator's, with the GCS caches as this candidate should have them."""
    env = common.child_env(emulator_env)
    if emulator_env is None:
        return env
    if candidate in CONTROLLER_CANDIDATES or candidate == "iterator_T1_statcache":
        for name in GCS_CACHE_VARS:  # TensorFlow's defaults: stat cache 5 s, matching-paths cache 0 s.
            env.pop(name, None)
    else:
        env["GCS_STAT_CACHE_MAX_AGE"] = "0"  # What tf.train.latest_checkpoint needs on gs:// (see the docstring).
    return env


class _Child:
    """A ``python -m bench.continuous_eval.children ROLE SPEC`` process: JSON lines on a private pipe."""

    def __init__(self, name: str, role: str, spec: Dict[str, Any], log_dir: Path, env: Dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        command = [sys.executable, "-m", "bench.continuous_eval.children", role, json.dumps(spec)]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(command, cwd=str(common.REPO_ROOT), env=env, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log_file, text=True, bufsize=1)
        self.exit_time: Optional[float] = None
        self.rusage: Optional[Any] = None
        self._waiter: Optional[threading.Thread] = None

    def send(self, message: Dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout_s: float, what: str) -> Dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise common.WorkerError(f"{self.name}: no answer to {what} within {timeout_s} s; log: {self.log_tail()}")
        line = self.process.stdout.readline()
        if not line:
            raise common.WorkerError(f"{self.name} exited during {what}; log: {self.log_tail()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise common.WorkerError(f"{self.name} failed {what}: {answer.get('error')}")
        return answer

    def watch_exit(self) -> None:
        """Starts a thread that reaps the process and stamps its exit (``time.time()``) and resource usage."""

        def wait() -> None:
            _, status, rusage = os.wait4(self.process.pid, 0)
            self.exit_time = time.time()
            self.rusage = rusage
            self.process.returncode = os.waitstatus_to_exitcode(status)

        self._waiter = threading.Thread(target=wait, daemon=True)
        self._waiter.start()

    def join_exit(self, timeout_s: float) -> bool:
        """Waits for the exit; kills the process after ``timeout_s``. Returns whether it exited by itself."""
        assert self._waiter is not None
        self._waiter.join(timeout_s)
        if not self._waiter.is_alive():
            return True
        common.log(f"continuous_eval: {self.name} did not exit within {timeout_s:.0f} s; killed")
        self.process.kill()
        self._waiter.join(10)
        return False

    def close(self) -> None:
        if self._waiter is not None:
            if self._waiter.is_alive():
                self.process.kill()
                self._waiter.join(10)
            return
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(common.EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"<no log: {error}>"


def _plan(settings: Dict[str, Any], rep: int) -> List[Tuple[str, str]]:
    """The (config, candidate) runs of round ``rep``, configs and candidates rotated round by round."""
    runs = []
    configs = list(settings["configs"])
    for c_index, config in enumerate(common.rotations(configs, rep)):
        for candidate in common.rotations(list(settings["configs"][config]), rep + c_index):
            runs.append((config, candidate))
    return runs


def run(ctx: Context) -> Dict[str, Any]:
    settings = ctx.settings(SETTINGS)
    scratch = ctx.scratch_dir / "continuous_eval"
    scratch.mkdir(parents=True, exist_ok=True)
    wants_gcs = any(CONFIGS[c]["target"] == "gcs" for c in settings["configs"])
    emulator, bucket, gcs_problem = None, None, None
    if wants_gcs:
        from bench.parts.checkpoint_io import _start_emulator

        emulator, bucket, gcs_problem = _start_emulator()
        if gcs_problem:
            common.log(f"continuous_eval: {gcs_problem}; local disk only")
    configs = {c: cands for c, cands in settings["configs"].items()
               if CONFIGS[c]["target"] != "gcs" or bucket is not None}
    run_settings = {**settings, "configs": configs}
    emulator_env = emulator.env if emulator is not None else None
    samples: Dict[str, Dict[str, List[Dict[str, Any]]]] = {c: {k: [] for k in cands} for c, cands in configs.items()}
    children: List[_Child] = []
    leads = random.Random(LEAD_SEED)
    try:
        trainer = _Child("trainer", "trainer", {"warm_dir": str(scratch / "trainer-warm")}, scratch,
                         common.child_env(emulator_env))
        children.append(trainer)
        for rep in range(settings["reps"]):
            plan = _plan(run_settings, rep)
            evaluators: Dict[Tuple[str, str], Tuple[_Child, str]] = {}
            for config, candidate in plan:
                tag = f"{config}-{candidate}-r{rep}"
                if CONFIGS[config]["target"] == "gcs":
                    model_dir = f"{bucket}/{tag}-{uuid.uuid4().hex[:6]}/{MODEL_DIR_NAME}"
                else:
                    model_dir = str(scratch / tag / MODEL_DIR_NAME)
                spec = {
                    "candidate": candidate,
                    "model_dir": model_dir,
                    "poll_s": CONTROLLER_CANDIDATES.get(candidate),
                    "timeout_s": BASELINE_CANDIDATES.get(candidate),
                    "train_steps": settings["checkpoints"],
                    "eval_sleep_s": CONFIGS[config]["eval_sleep_s"],
                    "warm_dir": str(scratch / f"warm-{tag}"),
                }
                child = _Child(f"eval-{tag}", "evaluator", spec, scratch, _candidate_env(candidate, emulator_env))
                children.append(child)
                evaluators[(config, candidate)] = (child, model_dir)
            t0 = time.perf_counter()
            if rep == 0:
                trainer.receive(READY_TIMEOUT_S, "start-up")
            for child, _ in evaluators.values():
                child.receive(READY_TIMEOUT_S, "start-up")
            common.log(f"continuous_eval: round {rep + 1}: {len(evaluators)} evaluators ready in "
                       f"{time.perf_counter() - t0:.1f} s")
            for config, candidate in plan:
                child, model_dir = evaluators[(config, candidate)]
                lead_s = LEAD_MIN_S + LEAD_SPAN_S * leads.random()
                row = _one_run(trainer, child, model_dir, settings, CONFIGS[config]["eval_sleep_s"], lead_s)
                row["round"] = rep
                samples[config][candidate].append(row)
                common.log(
                    f"continuous_eval: {config} {candidate}: noticed median "
                    f"{report.fmt_seconds(common.median(row['noticed_s']))}, max "
                    f"{report.fmt_seconds(max(row['noticed_s'], default=None))}, evaluated "
                    f"{len(row['evaluated_steps'])}/{row['saved']}, exit "
                    f"{report.fmt_seconds(row['exit_delay_s'])}")
    finally:
        for child in children:
            child.close()
        if emulator is not None:
            emulator.stop()
    return summarize(samples, run_settings, gcs_problem)


def _one_run(trainer: _Child, evaluator: _Child, model_dir: str, settings: Dict[str, Any],
             eval_sleep_s: float, lead_s: float) -> Dict[str, Any]:
    """One trainer run watched by one evaluator; returns the evaluator's timings against the trainer's."""
    evaluator.watch_exit()
    evaluator.send({"op": "go"})
    go_time = time.time()
    time.sleep(lead_s)
    n = settings["checkpoints"]
    trainer.send({"op": "train", "model_dir": model_dir, "checkpoints": n, "interval_s": settings["interval_s"]})
    train = trainer.receive(120 + n * 10, "train")
    exited = evaluator.join_exit(EXIT_GRACE_S + n * eval_sleep_s)
    try:
        result = evaluator.receive(5, "result")
    except common.WorkerError as error:
        result = {"error": str(error)}
    landed = {int(step): t for step, t in train["landed"]}
    final_step = max(landed)
    final_landed = landed[final_step]
    entered = {}
    for step, t in result.get("evaluate_entered", []):
        entered.setdefault(int(step), t)  # First evaluation of a step (a step is never evaluated twice here).
    seen = {int(step): t for step, t in result.get("first_seen", [])}
    per_checkpoint = []
    for step in sorted(landed):
        row = {"step": step, "landed": landed[step], "seen": seen.get(step), "entered": entered.get(step)}
        row["noticed_s"] = None if row["entered"] is None else row["entered"] - row["landed"]
        row["seen_s"] = None if row["seen"] is None else row["seen"] - row["landed"]
        per_checkpoint.append(row)
    exit_time = evaluator.exit_time if exited else None
    loop_end = result.get("loop_end")
    watch_s = (loop_end - result["go"]) if loop_end and result.get("go") else None
    rusage = evaluator.rusage
    return {
        "model_dir": model_dir,
        "lead_s": lead_s,
        "saved": len(landed),
        "evaluated_steps": sorted(s for s in entered if s in landed),
        "noticed_s": [r["noticed_s"] for r in per_checkpoint if r["noticed_s"] is not None],
        "exit_delay_s": None if exit_time is None else exit_time - final_landed,
        "loop_end_delay_s": None if loop_end is None else loop_end - final_landed,
        "teardown_s": None if exit_time is None or loop_end is None else exit_time - loop_end,
        "marker_lag_s": train["done"] - final_landed,
        "final_evaluated": final_step in entered,
        "exited": exited,
        "returncode": evaluator.process.returncode,
        "go_to_first_landed_s": min(landed.values()) - go_time,
        "checkpoint_interval_s": (final_landed - min(landed.values())) / (len(landed) - 1) if len(landed) > 1 else None,
        "save_s": common.median(train.get("save_s", [])),
        "polls": result.get("polls"),
        "poll_s_mean": (result["poll_time_s"] / result["polls"]) if result.get("polls") else None,
        "polls_per_s": (result["polls"] / watch_s) if result.get("polls") and watch_s else None,
        "watch_cpu_s": result.get("watch_cpu_s"),
        "watch_s": watch_s,
        "watch_cpu_share": (result["watch_cpu_s"] / watch_s
                            if watch_s and result.get("watch_cpu_s") is not None else None),
        "process_cpu_s": None if rusage is None else rusage.ru_utime + rusage.ru_stime,
        "max_rss_mb": None if rusage is None else rusage.ru_maxrss / 1024,
        "restore_s": result.get("restore_s", []),
        "marker_read_s": result.get("marker_read_s", []),
        "record_write_s": result.get("record_write_s", []),
        "gcs_stat_cache_max_age": result.get("gcs_stat_cache_max_age"),
        "stop_reason": result.get("stop_reason"),
        "error": result.get("error"),
        "per_checkpoint": per_checkpoint,
    }


register(Part(name="continuous_eval", title="4. Continuous-eval latency", order=40, run=run, markdown=markdown,
              plots=[plot_noticed, plot_exit], goals=GOALS))
