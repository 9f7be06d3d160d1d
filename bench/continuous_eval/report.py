"""The continuous-eval latency part's summary of its samples, its Markdown table and its plots."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from bench import common, report
from bench.continuous_eval.settings import (
    CANDIDATE_NOTES, CONFIGS, CONTROLLER_CANDIDATES, EXIT_GOAL_S, GOALS, HEADLINE_CONFIG, MODEL_DESCRIPTION,
    NOTICED_GOAL_S,
)



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
