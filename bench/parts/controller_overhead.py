"""Part 1: controller overhead - steps/s of one model and data through five training loops.

Candidates (see ``bench/worker.py``): ``raw`` (one tf.function, the speed limit), ``raw_loop`` (a bare Python loop
over a steps_per_loop-step tf.function: the floor for any controller), ``controller`` (controller_core),
``orbit`` (TF Model Garden's Orbit 2.20.0) and ``keras`` (``Model.fit(steps_per_execution=...)``), at several
steps_per_loop, without checkpoints and with a checkpoint every ``ckpt_every`` steps, sync and async.

Every measured call is a whole ``train()`` (or ``fit()``) of ``steps[spl]`` steps and includes what that call
does: logging, summaries (no directory: no-op writer), checkpoint saves, the final save and the wait for async
saves. steps/s = steps / wall seconds of the call.
"""

from __future__ import annotations

from typing import Any, Dict

from bench import common
from bench import report
from bench import training
from bench.parts import Context, Part, register

CANDIDATES = ("raw", "raw_loop", "controller", "orbit", "keras")
MODES = ("none", "sync", "async")

SETTINGS: Dict[str, Dict[str, Any]] = {
    "tiny": {
        "candidates": ("raw", "controller", "orbit"),
        "spls": (10, 100),
        "modes": ("none",),
        "ckpt_every": 100,
        "steps": {10: 200, 100: 200},
        "reps": 2,
    },
    "quick": {
        "candidates": CANDIDATES,
        "spls": (1, 10, 100, 1000),
        "modes": MODES,
        "ckpt_every": 100,
        "steps": {1: 300, 10: 600, 100: 2000, 1000: 2000},
        "reps": 5,
    },
    "full": {
        "candidates": CANDIDATES,
        "spls": (1, 10, 100, 1000),
        "modes": MODES,
        "ckpt_every": 100,
        "steps": {1: 2000, 10: 4000, 100: 8000, 1000: 8000},
        "reps": 7,
    },
}

GOALS = {
    "controller_vs_raw": "≥ 0.97× raw at steps_per_loop ≥ 100 (no checkpoints)",
    "controller_vs_orbit": "≥ 1.0× Orbit at every steps_per_loop (no checkpoints)",
}
RAW_GOAL, RAW_GOAL_MIN_SPL, ORBIT_GOAL = 0.97, 100, 1.0
NOISY = 0.05  # Half-range of the per-round ratios, relative to their median, above which a cell is flagged.

# (key in latest.json, numerator candidate, denominator candidate)
RATIOS = (
    ("controller_vs_raw", "controller", "raw"),
    ("controller_vs_orbit", "controller", "orbit"),
    ("controller_vs_raw_loop", "controller", "raw_loop"),
    ("controller_vs_keras", "controller", "keras"),
    ("controller_whatif_vs_controller", "controller_whatif", "controller"),
    ("controller_whatif_vs_orbit", "controller_whatif", "orbit"),
    ("controller_whatif_vs_raw", "controller_whatif", "raw"),
    ("orbit_vs_raw", "orbit", "raw"),
    ("keras_vs_raw", "keras", "raw"),
)


def run(ctx: Context) -> Dict[str, Any]:
    settings = ctx.settings(SETTINGS)
    for key in ("candidates", "modes"):
        if ctx.options.get(key):
            settings[key] = ctx.options[key]
    orbit = common.orbit_status(ctx.orbit_policy if "orbit" in settings["candidates"] else "skip")
    common.log(f"controller_overhead: Orbit {'available' if orbit['available'] else 'NOT available'} ({orbit['reason']})")
    log_dir = ctx.scratch_dir / "controller_overhead"
    log_dir.mkdir(parents=True, exist_ok=True)
    with common.WorkerPool() as pool:
        candidates = training.start_workers(pool, settings["candidates"], log_dir, orbit,
                                            tf_threads=ctx.options.get("tf_threads"))
        startup = pool.wait_ready()
        data = training.setup_workers(pool, candidates, log_dir / "ckpt")
        samples = training.measure(
            pool,
            candidates,
            spls=settings["spls"],
            modes=settings["modes"],
            ckpt_every=settings["ckpt_every"],
            steps=settings["steps"],
            reps=settings["reps"],
            label="controller_overhead: ",
        )
    return summarize(samples, settings, candidates, orbit, startup, data, ctx.options.get("tf_threads"))


def summarize(samples, settings, candidates, orbit, startup, data, ctx_tf_threads=None) -> Dict[str, Any]:
    spls = [str(s) for s in settings["spls"]]
    modes = settings["modes"]
    steps_per_s = {
        c: {m: {s: common.spread(training.sps(samples, c, m, s)) for s in spls} for m in modes} for c in candidates
    }
    by_mode: Dict[str, Dict[str, Any]] = {}
    for mode in modes:
        by_mode[mode] = {}
        for key, a, b in RATIOS:
            if a in candidates and b in candidates:
                by_mode[mode][key] = {s: training.ratio_stats(samples, (a, mode), (b, mode), s) for s in spls}
    # The same ratios per CPU-second of the worker process (all its threads): less sensitive to other jobs
    # taking cores away, but only comparable between candidates when TF's thread pools do not spin
    # (see --tf-threads).
    cpu_ratios: Dict[str, Any] = {}
    if "none" in modes:
        for key, a, b in RATIOS:
            if a in candidates and b in candidates:
                cpu_ratios[key] = {
                    s: training.ratio_stats(samples, (a, "none"), (b, "none"), s, "steps_per_cpu_s") for s in spls
                }
    # Cost of checkpointing relative to no checkpoints, same candidate, same round.
    checkpoint_cost: Dict[str, Any] = {}
    if "none" in modes:
        for mode in (m for m in modes if m != "none"):
            checkpoint_cost[mode] = {}
            for c in candidates:
                checkpoint_cost[mode][c] = {}
                for s in spls:
                    stats = training.ratio_stats(samples, (c, mode), (c, "none"), s)
                    checkpoint_cost[mode][c][s] = None if stats is None else 1.0 - stats["median"]

    # Extra wall time per loop over the bare Python loop (what the controller itself adds) and over raw.
    overhead_us: Dict[str, Any] = {}
    for ref in ("raw_loop", "raw"):
        if ref not in candidates:
            continue
        overhead_us[f"vs_{ref}"] = {
            c: {s: training.per_loop_overhead_us(samples, (c, "none"), (ref, "none"), s) for s in spls}
            for c in candidates if c not in (ref, "raw") and "none" in modes
        }

    def headline(key: str) -> Dict[str, float]:
        per_spl = by_mode.get("none", {}).get(key, {})
        return {s: v["median"] for s, v in per_spl.items() if v is not None}

    result: Dict[str, Any] = {
        "model": training.MODEL_DESCRIPTION,
        "data": data,
        "settings": {k: (v if k != "steps" else {str(a): b for a, b in v.items()}) for k, v in settings.items()},
        "candidates": candidates,
        "orbit": orbit,
        "worker_startup_s": startup,
        "controller_vs_raw": headline("controller_vs_raw"),
        "controller_vs_orbit": headline("controller_vs_orbit"),
        "controller_vs_raw_loop": headline("controller_vs_raw_loop"),
        "controller_vs_keras": headline("controller_vs_keras"),
        "per_loop_overhead_us": overhead_us,
        "ratios_by_checkpoint_mode": by_mode,
        "ratios_per_cpu_second": cpu_ratios,
        "tf_threads": ctx_tf_threads,
        "checkpoint_cost_vs_none": checkpoint_cost,
        "steps_per_s": steps_per_s,
        "samples": samples,
    }
    result["goals"] = evaluate_goals(result)
    return result


def evaluate_goals(result: Dict[str, Any]) -> Dict[str, Any]:
    none = result["ratios_by_checkpoint_mode"].get("none", {})

    def noisy(key: str) -> list:
        return sorted((s for s, v in none.get(key, {}).items() if v and (v["rel_spread"] or 0) > NOISY), key=int)

    goals: Dict[str, Any] = {}
    raw = {s: v for s, v in result["controller_vs_raw"].items() if int(s) >= RAW_GOAL_MIN_SPL}
    goals["controller_vs_raw"] = {
        "goal": GOALS["controller_vs_raw"],
        "met": all(v >= RAW_GOAL for v in raw.values()) if raw else None,
        "per_spl": {s: v >= RAW_GOAL for s, v in raw.items()},
        "noisy_spl": [s for s in noisy("controller_vs_raw") if int(s) >= RAW_GOAL_MIN_SPL],
    }
    orbit = result["controller_vs_orbit"]
    goals["controller_vs_orbit"] = {
        "goal": GOALS["controller_vs_orbit"],
        "met": all(v >= ORBIT_GOAL for v in orbit.values()) if orbit else None,
        "per_spl": {s: v >= ORBIT_GOAL for s, v in orbit.items()},
        "noisy_spl": noisy("controller_vs_orbit"),
    }
    return goals


def markdown(result: Dict[str, Any]) -> str:
    candidates = result["candidates"]
    spls = [str(s) for s in result["settings"]["spls"]]
    sps = result["steps_per_s"]
    out = [
        f"Model: {result['model']}. Data: {sorted(set(result['data'].values()))}. "
        f"Steps per measured call: {result['settings']['steps']}; {result['settings']['reps']} interleaved rounds; "
        "steps/s are medians, ratios are medians of per-round ratios (min–max in brackets). "
        f"Orbit: {result['orbit']['reason']}.",
        "",
        "**No checkpoints** (steps/s, higher is better):",
        "",
    ]
    header = ["steps_per_loop"] + candidates + ["controller/raw (goal ≥0.97 at ≥100)", "controller/orbit (goal ≥1.0)",
                                                "controller/raw_loop", "controller/keras"]
    rows = []
    none = result["ratios_by_checkpoint_mode"].get("none", {})
    for s in spls:
        row = [s] + [report.fmt(sps[c]["none"][s]["median"]) if "none" in sps[c] else "–" for c in candidates]
        for key in ("controller_vs_raw", "controller_vs_orbit", "controller_vs_raw_loop", "controller_vs_keras"):
            stats = none.get(key, {}).get(s)
            cell = "–" if stats is None else report.fmt_ratio(stats["median"], stats["min"], stats["max"])
            if stats is not None and key == "controller_vs_raw" and int(s) >= RAW_GOAL_MIN_SPL:
                cell += " ✅" if stats["median"] >= RAW_GOAL else " ❌"
            if stats is not None and key == "controller_vs_orbit":
                cell += " ✅" if stats["median"] >= ORBIT_GOAL else " ❌"
            if stats is not None and (stats["rel_spread"] or 0) > NOISY:
                cell += " ⚠"
            row.append(cell)
        rows.append(row)
    out.append(report.table(header, rows))
    out += ["", f"⚠: per-round ratios spread more than ±{NOISY:.0%} around the median; the machine was too noisy "
                "for that cell to settle a goal (rerun, or use the full preset)."]
    shown = ("controller_vs_raw", "controller_vs_orbit", "controller_vs_raw_loop", "controller_vs_keras")
    others = {k: v for k, v in none.items() if k not in shown and v}
    if others:
        out += ["", "Other ratios (no checkpoints): " + "; ".join(
            f"{key.replace('_vs_', '/')}: " + ", ".join(
                f"{s}: {report.fmt_ratio(v['median'])}" for s, v in per.items() if v is not None)
            for key, per in others.items()) + "."]
    cpu = result.get("ratios_per_cpu_second", {})
    if cpu.get("controller_vs_raw") or cpu.get("controller_vs_orbit"):
        threads = result.get("tf_threads")
        out += ["", f"Per CPU-second of the worker process instead of per wall second (TF threads: "
                    f"{threads or 'default'}{'; TF pools may spin, so read with care' if not threads else ''}): "
                + "; ".join(
                    f"{key.replace('_vs_', '/')}: " + ", ".join(
                        f"{s}: {report.fmt_ratio(v['median'], v['min'], v['max'])}" for s, v in per.items() if v)
                    for key, per in cpu.items() if key in ("controller_vs_raw", "controller_vs_orbit",
                                                           "controller_whatif_vs_orbit") and per) + "."]
    over = result.get("per_loop_overhead_us", {}).get("vs_raw_loop", {})
    if over:
        out += [
            "",
            "Extra wall time per loop over `raw_loop` (a bare Python loop calling the same tf.function), "
            "µs per loop = steps_per_loop × (1/steps/s − 1/steps/s of raw_loop), median of rounds: "
            + "; ".join(
                f"{c}: " + ", ".join(f"{s}: {report.fmt(v)}" for s, v in per.items() if v is not None)
                for c, per in over.items()
            )
            + ".",
        ]
    modes = [m for m in result["settings"]["modes"] if m != "none"]
    if modes:
        every = result["settings"]["ckpt_every"]
        out += [
            "",
            f"**With a checkpoint every {every} steps** (at steps_per_loop > {every} the loops can only save at "
            "loop ends, so every steps_per_loop steps; raw saves at the same steps). steps/s, and in brackets the "
            "throughput lost against no checkpoints (same candidate, same round):",
            "",
        ]
        header = ["steps_per_loop", "mode"] + candidates + ["controller/raw", "controller/orbit"]
        rows = []
        for s in spls:
            for mode in modes:
                row = [s, mode]
                for c in candidates:
                    cost = result["checkpoint_cost_vs_none"].get(mode, {}).get(c, {}).get(s)
                    cell = report.fmt(sps[c][mode][s]["median"])
                    if cost is not None:
                        cell += f" (−{cost * 100:.1f}%)" if cost >= 0 else f" (+{-cost * 100:.1f}%)"
                    row.append(cell)
                ratios = result["ratios_by_checkpoint_mode"].get(mode, {})
                for key in ("controller_vs_raw", "controller_vs_orbit"):
                    stats = ratios.get(key, {}).get(s)
                    row.append("–" if stats is None else report.fmt_ratio(stats["median"], stats["min"], stats["max"]))
                rows.append(row)
        out.append(report.table(header, rows))
    goals = result["goals"]
    out += ["", "Goals: " + "; ".join(f"{g['goal']}: {report.verdict(g['met'])}" for g in goals.values()) + "."]
    return "\n".join(out)


def plot_throughput(ax: Any, result: Dict[str, Any]) -> None:
    spls = [str(s) for s in result["settings"]["spls"]]
    for c in result["candidates"]:
        ys = [result["steps_per_s"][c]["none"][s]["median"] for s in spls]
        ax.plot([int(s) for s in spls], ys, marker="o", label=c)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("steps_per_loop")
    ax.set_ylabel("steps/s (median)")
    ax.set_title("Throughput, no checkpoints")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_ratios(ax: Any, result: Dict[str, Any]) -> None:
    spls = [str(s) for s in result["settings"]["spls"]]
    none = result["ratios_by_checkpoint_mode"].get("none", {})
    for key, style in (("controller_vs_raw", "o-"), ("controller_vs_orbit", "s-"), ("controller_vs_keras", "^-")):
        per = none.get(key)
        if not per:
            continue
        xs = [int(s) for s in spls if per.get(s)]
        med = [per[s]["median"] for s in spls if per.get(s)]
        lo = [per[s]["median"] - per[s]["min"] for s in spls if per.get(s)]
        hi = [per[s]["max"] - per[s]["median"] for s in spls if per.get(s)]
        ax.errorbar(xs, med, yerr=[lo, hi], fmt=style, capsize=3, label=key.replace("_vs_", " / "))
    ax.axhline(RAW_GOAL, color="tab:blue", ls=":", lw=1, label=f"goal vs raw ({RAW_GOAL}, spl ≥ {RAW_GOAL_MIN_SPL})")
    ax.axhline(ORBIT_GOAL, color="tab:orange", ls=":", lw=1, label=f"goal vs Orbit ({ORBIT_GOAL})")
    ax.set_xscale("log")
    ax.set_xlabel("steps_per_loop")
    ax.set_ylabel("steps/s ratio (median, min–max)")
    ax.set_title("controller_core relative throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


register(
    Part(
        name="controller_overhead",
        title="1. Controller overhead",
        order=10,
        run=run,
        markdown=markdown,
        plots=[plot_throughput, plot_ratios],
        goals=GOALS,
    )
)
