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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench import common
from bench import report
from bench.parts import Context, Part, register

CONTROLLER_CANDIDATES = {"controller_p1.0": 1.0, "controller_p0.2": 0.2}
BASELINE_CANDIDATES = {"iterator_T1": 1.0, "iterator_T1_statcache": 1.0}
CANDIDATE_NOTES = {
    "controller_p1.0": "controller_core evaluate_continuously, poll 1.0 s (default)",
    "controller_p0.2": "controller_core evaluate_continuously, poll 0.2 s",
    "iterator_T1": "tf.train.checkpoints_iterator, timeout 1 s + timeout_fn (Model Garden rule)",
    "iterator_T1_statcache": "as iterator_T1, TF's default 5 s GCS stat cache",
}
CONFIGS = {
    "local": {"target": "local", "eval_sleep_s": 0.0,
              "note": "local disk, evaluation takes milliseconds"},
    "local_slow_eval": {"target": "local", "eval_sleep_s": 0.8,
                        "note": "local disk, evaluation takes 0.8 s (> the checkpoint interval)"},
    "gcs": {"target": "gcs", "eval_sleep_s": 0.0,
            "note": "gs:// through the GCS emulator (loopback TLS proxy → fake-gcs-server), evaluation takes ms"},
}
HEADLINE_CONFIG = "local"
SETTINGS: Dict[str, Dict[str, Any]] = {
    "tiny": {
        "reps": 1,
        "checkpoints": 3,
        "interval_s": 0.3,
        "configs": {"local": ("controller_p0.2", "iterator_T1")},
    },
    "quick": {
        "reps": 1,
        "checkpoints": 8,
        "interval_s": 0.45,
        "configs": {
            "local": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
            "local_slow_eval": ("controller_p1.0", "iterator_T1"),
            "gcs": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
        },
    },
    "full": {
        "reps": 3,
        "checkpoints": 10,
        "interval_s": 0.45,
        "configs": {
            "local": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
            "local_slow_eval": ("controller_p1.0", "controller_p0.2", "iterator_T1"),
            "gcs": ("controller_p1.0", "controller_p0.2", "iterator_T1", "iterator_T1_statcache"),
        },
    },
}
NOTICED_GOAL_S = 1.0
EXIT_GOAL_S = 2.0
GOALS = {
    "checkpoint_noticed": "checkpoint noticed ≤ 1 s (median; checkpoint saved → its evaluation starts)",
    "exit_after_training": "final checkpoint to evaluator exit ≤ 2 s",
}
MODEL_DESCRIPTION = "64→32(relu)→10 MLP (tf_keras), Adam(1e-3), random data (batch 64 train, 256 rows eval)"
# The evaluator gets "go" this long before the trainer starts (it polls an empty directory meanwhile): a random
# lead, uniform over one 1 s poll period, so the trainer's checkpoints and its end fall at a random phase of the
# evaluator's polls in every run (a fixed lead repeats the same phase, so the same delays, run after run).
LEAD_MIN_S = 0.3
LEAD_SPAN_S = 1.0
LEAD_SEED = 0
READY_TIMEOUT_S = 300.0
EXIT_GRACE_S = 30.0  # After training: how long an evaluator may take to exit (+ its evaluation backlog).
MODEL_DIR_NAME = "run"
GCS_CACHE_VARS = ("GCS_STAT_CACHE_MAX_AGE", "GCS_MATCHING_PATHS_CACHE_MAX_AGE")


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
    """A ``python -m bench.parts.continuous_eval --child ROLE SPEC`` process: JSON lines on a private pipe."""

    def __init__(self, name: str, role: str, spec: Dict[str, Any], log_dir: Path, env: Dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        command = [sys.executable, "-m", "bench.parts.continuous_eval", "--child", role, json.dumps(spec)]
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


# ---------------------------------------------------------------------------------------------------- summary


def summarize(samples: Dict[str, Dict[str, List[Dict[str, Any]]]], settings: Dict[str, Any],
              gcs_problem: Optional[str]) -> Dict[str, Any]:
    by_config: Dict[str, Dict[str, Any]] = {}
    for config, candidates in samples.items():
        by_config[config] = {}
        for candidate, rows in candidates.items():
            noticed = [v for row in rows for v in row["noticed_s"]]
            seen = [r["seen_s"] for row in rows for r in row["per_checkpoint"] if r["seen_s"] is not None]
            saved = sum(row["saved"] for row in rows)
            evaluated = sum(len(row["evaluated_steps"]) for row in rows)
            by_config[config][candidate] = {
                "noticed_median_s": common.median(noticed),
                "noticed_max_s": max(noticed, default=None),
                "noticed": common.spread(noticed),
                "seen_median_s": common.median(seen),
                "evaluated": evaluated,
                "saved": saved,
                "evaluated_per_round": [len(row["evaluated_steps"]) for row in rows],
                "exit_delay_s": common.median([row["exit_delay_s"] for row in rows]),
                "exit_delay": common.spread([row["exit_delay_s"] for row in rows]),
                "loop_end_delay_s": common.median([row["loop_end_delay_s"] for row in rows]),
                "teardown_s": common.median([row["teardown_s"] for row in rows]),
                "marker_lag_s": common.median([row["marker_lag_s"] for row in rows]),
                "checkpoint_interval_s": common.median([row["checkpoint_interval_s"] for row in rows]),
                "save_s": common.median([row["save_s"] for row in rows]),
                "polls_per_s": common.median([row["polls_per_s"] for row in rows]),
                "poll_s_mean": common.median([row["poll_s_mean"] for row in rows]),
                "watch_cpu_share": common.median([row["watch_cpu_share"] for row in rows]),
                "restore_median_s": common.median([v for row in rows for v in row["restore_s"]]),
                "marker_read_median_s": common.median([v for row in rows for v in row["marker_read_s"]]),
                "record_write_median_s": common.median([v for row in rows for v in row["record_write_s"]]),
                "gcs_stat_cache_max_age": sorted({str(row["gcs_stat_cache_max_age"]) for row in rows}),
                "all_exited": all(row["exited"] for row in rows),
                "errors": [row["error"] for row in rows if row.get("error")],
                "stop_reasons": sorted({str(row["stop_reason"]) for row in rows}),
            }
    headline = by_config.get(HEADLINE_CONFIG, {})
    default = headline.get("controller_p1.0", {})
    controllers = {f"{config}/{cand}": stats for config, cands in by_config.items() for cand, stats in cands.items()
                   if cand in CONTROLLER_CANDIDATES}

    def met(value: Optional[float], goal: float) -> Optional[bool]:
        return None if value is None else value <= goal

    return {
        "settings": {**settings, "configs": {c: list(v) for c, v in settings["configs"].items()}},
        "headline_config": HEADLINE_CONFIG,
        "noticed_median_s": {cand: stats["noticed_median_s"] for cand, stats in headline.items()},
        "exit_delay_s": {cand: stats["exit_delay_s"] for cand, stats in headline.items()},
        "model": MODEL_DESCRIPTION,
        "configs": {c: CONFIGS[c]["note"] for c in samples},
        "candidates": {cand: CANDIDATE_NOTES[cand] for cands in samples.values() for cand in cands},
        "gcs": {"measured": "gcs" in samples, "note": gcs_problem or ""},
        "by_config": by_config,
        "samples": samples,
        "goals": {
            "checkpoint_noticed": {
                "goal": GOALS["checkpoint_noticed"],
                "met": met(default.get("noticed_median_s"), NOTICED_GOAL_S),
                "compared": f"{HEADLINE_CONFIG}/controller_p1.0 (the product default)",
                "per_candidate": {k: met(v["noticed_median_s"], NOTICED_GOAL_S) for k, v in controllers.items()},
            },
            "exit_after_training": {
                "goal": GOALS["exit_after_training"],
                "met": met(default.get("exit_delay_s"), EXIT_GOAL_S),
                "compared": f"{HEADLINE_CONFIG}/controller_p1.0 (the product default), median of rounds",
                "per_candidate": {k: met(v["exit_delay_s"], EXIT_GOAL_S) for k, v in controllers.items()},
            },
        },
    }


def markdown(result: Dict[str, Any]) -> str:
    settings = result["settings"]
    out = [
        f"Trainer and evaluator in separate processes; {settings['checkpoints']} checkpoints, one per "
        f"{settings['interval_s']} s sleep + one step + save, {settings['reps']} interleaved round(s); model "
        f"{result['model']}. *noticed* = evaluator's `evaluate()` entered − trainer's `CheckpointManager.save` "
        "returned, per checkpoint (median and max over all checkpoints of all rounds; for policy \"all\" it includes "
        "the queue behind slower evaluations); *seen* = first listing that had it − saved. *exit* = evaluator "
        "process reaped − final checkpoint saved (median of rounds), split into the watch loop's end and the "
        "interpreter's exit. The baseline's stop rule is Model Garden's (`timeout_fn: restored step ≥ train_steps`) "
        "with T = 1 s, its best case: with Model Garden's default T = 3600 s its exit comes up to an hour after "
        "training. CPU = the evaluator's CPU time while watching / wall time.",
        "",
    ]
    rows, where = [], []
    for config, cands in result["by_config"].items():
        for cand, s in cands.items():
            goal_n = goal_e = ""
            if cand in CONTROLLER_CANDIDATES:
                goal_n = " " + ("✅" if s["noticed_median_s"] is not None and s["noticed_median_s"] <= NOTICED_GOAL_S
                                else "❌")
                goal_e = " " + ("✅" if s["exit_delay_s"] is not None and s["exit_delay_s"] <= EXIT_GOAL_S else "❌")
            rows.append([
                config, f"`{cand}`",
                report.fmt_seconds(s["noticed_median_s"]) + goal_n,
                report.fmt_seconds(s["noticed_max_s"]),
                f"{s['evaluated']}/{s['saved']}",
                report.fmt_seconds(s["exit_delay_s"]) + goal_e,
                report.fmt_seconds(s["loop_end_delay_s"]),
                report.fmt_seconds(s["teardown_s"]),
            ])
            cache = ",".join(s.get("gcs_stat_cache_max_age") or [])
            where.append([
                config, f"`{cand}`",
                report.fmt_seconds(s["seen_median_s"]),
                report.fmt_seconds(s.get("restore_median_s")),
                report.fmt_seconds(s.get("record_write_median_s")),
                report.fmt(s["polls_per_s"]),
                report.fmt_seconds(s["poll_s_mean"]),
                report.fmt_seconds(s.get("marker_read_median_s")),
                "–" if s["watch_cpu_share"] is None else f"{100 * s['watch_cpu_share']:.0f}%",
                report.fmt_seconds(s["checkpoint_interval_s"]),
                report.fmt_seconds(s["save_s"]),
                report.fmt_seconds(s["marker_lag_s"]),
                "–" if config != "gcs" else ("5 s (TF default)" if cache == "None" else f"{cache} s"),
            ])
    out.append(report.table(
        ["config", "candidate", "noticed median (goal ≤ 1 s)", "noticed max", "evaluated/saved",
         "exit (goal ≤ 2 s)", "of which: watch loop ends", "+ process exit"], rows))
    out += ["", "Where the time goes (medians): *seen* = first poll that found the checkpoint − save returned "
            "(negative: found before `save` returned, i.e. between its `.index`/state file and its return); "
            "restore / record write / marker read = the evaluator's calls per checkpoint / per poll; CPU = the "
            "evaluator's CPU time while watching ÷ wall time; ckpt interval and save = the trainer's.", ""]
    out.append(report.table(
        ["config", "candidate", "seen", "restore", "record write", "polls/s", "time per poll", "marker read",
         "CPU while watching", "ckpt interval", "save", "marker after final ckpt", "GCS stat cache"], where))
    out += ["", "Configurations: " + "; ".join(f"`{c}`: {note}" for c, note in result["configs"].items()) + "."]
    out += ["", "Candidates: " + "; ".join(f"`{c}`: {note}" for c, note in result["candidates"].items()) + ". "
            "On gs://, `controller_*` and `iterator_T1_statcache` run with TensorFlow's default GCS caches (stat 5 s), "
            "`iterator_T1` with `GCS_STAT_CACHE_MAX_AGE=0`. The full preset adds `iterator_T1_statcache` on gs://: "
            "the baseline as users get it (TF's default 5 s stat cache), which reads a stale size of the `checkpoint` "
            "state file and so misses checkpoints for up to 5 s."]
    if result["gcs"]["note"]:
        out += ["", f"gs://: {result['gcs']['note']}."]
    problems = [f"{config}/{cand}: {'; '.join(s['errors'])}" for config, cands in result["by_config"].items()
                for cand, s in cands.items() if s["errors"] or not s["all_exited"]]
    if problems:
        out += ["", "Problems: " + " | ".join(p[:300] for p in problems)]
    for key, goal in result["goals"].items():
        out += ["", f"Goal: {goal['goal']}: {report.verdict(goal['met'])} ({goal['compared']}; per candidate: "
                + ", ".join(f"{k} {report.verdict(v)}" for k, v in goal["per_candidate"].items()) + ")."]
    return "\n".join(out)


def plot_noticed(ax: Any, result: Dict[str, Any]) -> None:
    labels, medians, maxima = [], [], []
    for config, cands in result["by_config"].items():
        for cand, s in cands.items():
            labels.append(f"{config}\n{cand}")
            medians.append(s["noticed_median_s"] or 0)
            maxima.append(s["noticed_max_s"] or 0)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], medians, 0.4, label="noticed, median")
    ax.bar([x + 0.2 for x in xs], maxima, 0.4, label="noticed, max")
    ax.axhline(NOTICED_GOAL_S, color="k", ls=":", lw=1, label="goal (median ≤ 1 s)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=6, rotation=60, ha="right")
    ax.set_ylabel("checkpoint saved → evaluation starts (s)")
    ax.set_title("Continuous eval: checkpoint noticed")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_exit(ax: Any, result: Dict[str, Any]) -> None:
    labels, loop_end, teardown = [], [], []
    for config, cands in result["by_config"].items():
        for cand, s in cands.items():
            labels.append(f"{config}\n{cand}")
            loop_end.append(s["loop_end_delay_s"] or 0)
            teardown.append(s["teardown_s"] or 0)
    xs = list(range(len(labels)))
    ax.bar(xs, loop_end, 0.6, label="final checkpoint → watch loop ends")
    ax.bar(xs, teardown, 0.6, bottom=loop_end, label="→ process exit")
    ax.axhline(EXIT_GOAL_S, color="k", ls=":", lw=1, label="goal (≤ 2 s)")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=6, rotation=60, ha="right")
    ax.set_ylabel("seconds (median of rounds)")
    ax.set_title("Continuous eval: final checkpoint → evaluator exit")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------------- children


def _build(tf: Any, tf_keras: Any) -> Tuple[Any, Any]:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(64,)),
        tf_keras.layers.Dense(32, activation="relu"),
        tf_keras.layers.Dense(10),
    ])
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    return model, step


def _data(tf: Any, rows: int) -> Tuple[Any, Any]:
    x = tf.random.stateless_uniform([rows, 64], seed=[1, 2])
    y = tf.random.stateless_uniform([rows], seed=[3, 4], maxval=10, dtype=tf.int64)
    return x, y


def _child_trainer(spec: Dict[str, Any], proto: Any) -> None:
    import tensorflow as tf
    import tf_keras

    from tfpipe import controller_core
    model, step = _build(tf, tf_keras)
    optimizer = tf_keras.optimizers.Adam(1e-3)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = _data(tf, 64)

    @tf.function
    def train_step() -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        step.assign_add(1)
        return loss

    class Trainer(controller_core.AbstractTrainer):
        sleep_s = 0.5

        def train(self, num_steps: Any) -> Dict[str, Any]:
            loss = None
            for _ in range(int(num_steps)):
                time.sleep(self.sleep_s)  # The checkpoint cadence: ~sleep_s between saves.
                loss = train_step()
            return {"loss": loss}

    trainer = Trainer()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    train_step()  # Warm-up: trace the step, create the optimizer's slots, and save once.
    tf.train.CheckpointManager(checkpoint, spec["warm_dir"], max_to_keep=1).save()
    proto.write(json.dumps({"ok": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            step.assign(0)
            trainer.sleep_s = float(request["interval_s"])
            manager = tf.train.CheckpointManager(checkpoint, request["model_dir"], max_to_keep=None,
                                                 step_counter=step, checkpoint_interval=1)
            landed: List[Tuple[int, float]] = []
            save_s: List[float] = []
            original_save = manager.save

            def save(*args: Any, _original: Any = original_save, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                path = _original(*args, **kwargs)
                landed.append((int(step.numpy()), time.time()))  # The checkpoint has landed.
                save_s.append(time.perf_counter() - t0)
                return path

            manager.save = save
            controller = controller_core.Controller(global_step=step, trainer=trainer, steps_per_loop=1,
                                                    checkpoint_manager=manager)
            controller.train(int(request["checkpoints"]))  # Saves every step, then writes training_complete.json.
            done = time.time()
            answer = {"ok": True, "landed": landed, "done": done, "save_s": save_s}
        except Exception as error:  # Report, keep serving.
            import traceback

            answer = {"ok": False, "error": f"{type(error).__name__}: {error}\n{traceback.format_exc()[-2000:]}"}
        proto.write(json.dumps(answer) + "\n")


def _child_evaluator(spec: Dict[str, Any], proto: Any) -> None:
    import tensorflow as tf
    import tf_keras

    candidate = spec["candidate"]
    model, step = _build(tf, tf_keras)
    x, y = _data(tf, 256)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    eval_sleep_s = float(spec["eval_sleep_s"])
    entered: List[Tuple[int, float]] = []
    first_seen: Dict[int, float] = {}
    polls = {"n": 0, "s": 0.0}
    timings: Dict[str, List[float]] = {"restore_s": [], "marker_read_s": [], "record_write_s": []}

    def timed(key: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[key].append(time.perf_counter() - t0)

        return wrapper

    @tf.function
    def eval_fn() -> Any:
        return loss_fn(y, model(x, training=False))

    from tfpipe import controller_core
    class Evaluator(controller_core.AbstractEvaluator):
        def evaluate(self, num_steps: Any) -> Dict[str, Any]:
            entered.append((int(step.numpy()), time.time()))  # Evaluation starts (the step is restored by now).
            loss = eval_fn()
            if eval_sleep_s:
                time.sleep(eval_sleep_s)
            return {"loss": loss}

    evaluator = Evaluator()
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    # Warm-up, outside the measurement: trace the evaluation, save and restore one scratch checkpoint.
    eval_fn()
    warm = tf.train.Checkpoint(model=model, step=step).write(os.path.join(spec["warm_dir"], "warm"))
    checkpoint.restore(warm).expect_partial()
    step.assign(0)
    model_dir = spec["model_dir"]

    def record_seen(found: Sequence[int], now: float) -> None:
        for s in found:
            first_seen.setdefault(int(s), now)

    if candidate in CONTROLLER_CANDIDATES:
        from tfpipe.controller_core import checkpoint_watcher

        original_list = checkpoint_watcher.list_checkpoints

        def list_checkpoints(directory: str, name: str = "ckpt") -> Dict[int, str]:
            t0 = time.perf_counter()
            found = original_list(directory, name)
            now = time.time()
            polls["n"] += 1
            polls["s"] += time.perf_counter() - t0
            record_seen(list(found), now)
            return found

        checkpoint_watcher.list_checkpoints = list_checkpoints  # Controller calls it through the module.
        from tfpipe.controller_core import eval_records, restore, run_dir

        restore.restore_checked = timed("restore_s", restore.restore_checked)
        eval_records.EvalRecords.write = timed("record_write_s", eval_records.EvalRecords.write)
        original_read_json = run_dir.read_json

        def read_json(path: str) -> Any:
            if not path.endswith(run_dir.TRAINING_COMPLETE):
                return original_read_json(path)
            return timed("marker_read_s", original_read_json)(path)

        run_dir.read_json = read_json
        manager = tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=None)
        controller = controller_core.Controller(global_step=step, evaluator=evaluator, checkpoint_manager=manager)
        proto.write(json.dumps({"ok": True}) + "\n")
        sys.stdin.readline()  # "go"
        go, cpu0 = time.time(), time.process_time()
        controller.evaluate_continuously(steps=-1, policy="all", poll_interval=float(spec["poll_s"]),
                                         idle_timeout=120.0)
        stop_reason = controller.last_continuous_eval.stop_reason
    else:
        from tensorflow.python.checkpoint import checkpoint_management

        original_latest = checkpoint_management.latest_checkpoint

        def latest_checkpoint(checkpoint_dir: str, latest_filename: Optional[str] = None) -> Optional[str]:
            t0 = time.perf_counter()
            path = original_latest(checkpoint_dir, latest_filename)
            now = time.time()
            polls["n"] += 1
            polls["s"] += time.perf_counter() - t0
            if path is not None and path.rsplit("-", 1)[-1].isdigit():
                record_seen([int(path.rsplit("-", 1)[-1])], now)
            return path

        checkpoint_management.latest_checkpoint = latest_checkpoint  # checkpoints_iterator calls it so.
        train_steps = int(spec["train_steps"])
        restored = {"step": 0}

        def timeout_fn() -> bool:  # Model Garden (official/core/train_lib.py): stop once training's end is restored.
            return restored["step"] >= train_steps

        proto.write(json.dumps({"ok": True}) + "\n")
        sys.stdin.readline()  # "go"
        go, cpu0 = time.time(), time.process_time()
        deadline = time.monotonic() + 300
        stop_reason = "timeout_fn: final step restored"
        for path in tf.train.checkpoints_iterator(model_dir, timeout=float(spec["timeout_s"]), timeout_fn=timeout_fn):
            t0 = time.perf_counter()
            checkpoint.restore(path).expect_partial()  # What orbit.Controller.restore_checkpoint does.
            timings["restore_s"].append(time.perf_counter() - t0)
            restored["step"] = int(step.numpy())
            evaluator.evaluate(tf.convert_to_tensor(-1, dtype=tf.int32))
            if time.monotonic() > deadline:
                stop_reason = "safety deadline"
                break
    loop_end, cpu = time.time(), time.process_time() - cpu0
    proto.write(json.dumps({
        "ok": True, "candidate": candidate, "go": go, "loop_end": loop_end, "watch_cpu_s": cpu,
        "evaluate_entered": entered, "first_seen": sorted(first_seen.items()), "polls": polls["n"],
        "poll_time_s": polls["s"], "stop_reason": stop_reason, **timings,
        "gcs_stat_cache_max_age": os.environ.get("GCS_STAT_CACHE_MAX_AGE"),
    }) + "\n")
    proto.flush()


def _child_main(argv: Sequence[str]) -> int:
    """``--child trainer|evaluator SPEC``: answers go to the original stdout, everything printed to stderr."""
    role, spec = argv[1], json.loads(argv[2])
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        if role == "trainer":
            _child_trainer(spec, proto)
        else:
            _child_evaluator(spec, proto)
    except Exception as error:
        import traceback

        traceback.print_exc()
        proto.write(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}) + "\n")
        return 1
    return 0


register(Part(name="continuous_eval", title="4. Continuous-eval latency", order=40, run=run, markdown=markdown,
              plots=[plot_noticed, plot_exit], goals=GOALS))

if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--child":
    sys.exit(_child_main(sys.argv[1:]))
