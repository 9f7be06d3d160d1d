"""Interleaved throughput measurement of training candidates, each in its own worker process.

Used by the controller-overhead part and by the async-checkpoint cost in the checkpoint part.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from bench import common

MODEL = {"seed": 0, "batch_size": 64, "hidden_units": 128, "learning_rate": 1e-3}
MODEL_DESCRIPTION = (
    "64→128(relu)→10 MLP (tf_keras), batch 64, Adam(1e-3), sklearn digits (cache, shuffle(seed 0), repeat, "
    "prefetch), tf_keras.utils.set_random_seed(0)"
)


def start_workers(
    pool: common.WorkerPool,
    candidates: Sequence[str],
    log_dir: Path,
    orbit: Dict[str, Any],
    prefix: str = "",
    tf_threads: Optional[int] = None,
) -> List[str]:
    """Starts one worker per candidate (Orbit only when available); returns the candidates started.

    With ``tf_threads``, TensorFlow's intra- and inter-op pools get that many threads (TF_NUM_INTRAOP_THREADS,
    TF_NUM_INTEROP_THREADS), which makes CPU time per step far less dependent on what else runs on the machine.
    """
    started = []
    for candidate in candidates:
        kwargs: Dict[str, Any] = {}
        if tf_threads:
            kwargs["env"] = {"TF_NUM_INTRAOP_THREADS": str(tf_threads), "TF_NUM_INTEROP_THREADS": str(tf_threads)}
        if candidate == "orbit":
            if not orbit.get("available"):
                continue
            kwargs["pythonpath"] = [Path(orbit["path"])]
        pool.start(prefix + candidate, candidate, log_dir, **kwargs)
        started.append(candidate)
    return started


def setup_workers(pool: common.WorkerPool, candidates: Sequence[str], ckpt_root: Path, prefix: str = "") -> Dict[str, Any]:
    info = {}
    for candidate in candidates:
        root = ckpt_root / f"{prefix}{candidate}"
        root.mkdir(parents=True, exist_ok=True)
        answer = pool.workers[prefix + candidate].request("setup", timeout_s=300, ckpt_root=str(root), **MODEL)
        info[candidate] = answer.get("data")
    return info


def measure(
    pool: common.WorkerPool,
    candidates: Sequence[str],
    *,
    spls: Sequence[int],
    modes: Sequence[str],
    ckpt_every: int,
    steps: Dict[int, int],
    reps: int,
    prefix: str = "",
    label: str = "",
) -> Dict[str, Any]:
    """Measures steps/s of every (candidate, steps_per_loop, checkpoint mode), interleaved round by round.

    For each steps_per_loop: one unmeasured warm-up call per (mode, candidate) (tracing, first async save),
    then ``reps`` rounds; each round runs every (mode, candidate) once, in an order rotated from round to round.

    Returns:
        ``samples[candidate][mode][spl]``: a list of per-round answers (seconds, steps, steps_per_s, ...).
    """
    samples: Dict[str, Dict[str, Dict[str, List[Dict[str, Any]]]]] = {
        c: {m: {str(s): [] for s in spls} for m in modes} for c in candidates
    }
    pairs = [(m, c) for m in modes for c in candidates]
    for spl in spls:
        n = steps[spl]
        for mode in modes:
            if mode != "none" and n % max(ckpt_every, spl):
                raise ValueError(f"steps {n} at steps_per_loop {spl} must be a multiple of max(interval, spl)")
        warm = max(spl, ckpt_every)
        t0 = time.perf_counter()
        for mode, candidate in pairs:
            pool.workers[prefix + candidate].request("train", spl=spl, mode=mode, ckpt_every=ckpt_every, steps=warm)
        for r in range(reps):
            for mode, candidate in common.rotations(pairs, r):
                answer = pool.workers[prefix + candidate].request(
                    "train", spl=spl, mode=mode, ckpt_every=ckpt_every, steps=n
                )
                answer.pop("ok", None)
                answer["steps_per_s"] = answer["steps"] / answer["seconds"]
                answer["steps_per_cpu_s"] = answer["steps"] / answer["cpu_seconds"] if answer["cpu_seconds"] else None
                answer["round"] = r
                samples[candidate][mode][str(spl)].append(answer)
        common.log(f"{label}steps_per_loop={spl}: {reps} rounds x {len(pairs)} in {time.perf_counter() - t0:.1f} s")
    return samples


def sps(samples: Dict[str, Any], candidate: str, mode: str, spl: Any, metric: str = "steps_per_s") -> List[Optional[float]]:
    """Per-round steps/s (or ``metric``, e.g. steps_per_cpu_s; None where missing), aligned by round."""
    rows = samples.get(candidate, {}).get(mode, {}).get(str(spl), [])
    by_round = {row["round"]: row.get(metric) for row in rows}
    rounds = max(by_round) + 1 if by_round else 0
    return [by_round.get(r) for r in range(rounds)]


def ratio_stats(
    samples: Dict[str, Any], a: tuple, b: tuple, spl: Any, metric: str = "steps_per_s"
) -> Optional[Dict[str, Any]]:
    """Median (and range) of per-round steps/s ratios ``a / b``; ``a`` and ``b`` are ``(candidate, mode)``."""
    num, den = sps(samples, a[0], a[1], spl, metric), sps(samples, b[0], b[1], spl, metric)
    ratios = [x / y for x, y in zip(num, den) if x is not None and y]
    if not ratios:
        return None
    stats = common.spread(ratios)
    stats["per_round"] = ratios
    # Best against best: noise on a shared machine only ever slows a run down, so this is a second estimate.
    best_num, best_den = max((x for x in num if x), default=None), max((y for y in den if y), default=None)
    stats["ratio_of_best"] = best_num / best_den if best_num and best_den else None
    return stats


def per_loop_overhead_us(samples: Dict[str, Any], a: tuple, b: tuple, spl: Any) -> Optional[float]:
    """Median over rounds of the extra microseconds per loop of ``a`` over ``b``: spl * (1/sps_a - 1/sps_b)."""
    num, den = sps(samples, a[0], a[1], spl), sps(samples, b[0], b[1], spl)
    extra = [int(spl) * (1.0 / x - 1.0 / y) * 1e6 for x, y in zip(num, den) if x and y]
    return common.median(extra)
