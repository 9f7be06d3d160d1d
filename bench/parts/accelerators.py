"""Part 5: precision and XLA - steps/s of a small convolutional model, and whether its losses track float32.

Each configuration (see ``bench/accel_training.py``) runs in its own worker process: a dtype policy and XLA's
compilation caches never leak from one into another. The train component's own code path is measured:
tfpipe's generic ``KerasTrainer`` with ``precision`` and ``jit_compile`` under ``controller_core``.

* Correctness: every configuration first trains ``check_steps`` steps from the same weights on the same batches
  and reports the mean loss of each ``check_every``-step loop; each curve is compared with float32's (the largest
  relative difference of a loop's loss). The tolerances are stated in ``TOLERANCES``; reported, not asserted.
* Speed: after one unmeasured warm-up call, ``reps`` rounds of ``steps`` steps per configuration, the order
  rotated every round; ratios to float32 are medians of per-round ratios.

Presets: ``tiny``/``quick``/``full`` on CPU (float32, mixed_bfloat16, XLA; mixed_float16 is emulated on CPUs and
says nothing there), and ``gpu`` for a machine with an NVIDIA GPU (``python -m bench.run --preset gpu``):
float32, mixed_float16, XLA and both, and controller_core against a raw loop (the trainer's own ``tf.function``
loop, called directly) and Keras ``Model.fit`` on the same float32 model.
"""

from __future__ import annotations

from typing import Any, Dict, List

from bench import common
from bench import report
from bench.parts import Context, Part, register

# name -> (loop, precision, jit_compile)
CONFIGS = {
    "float32": ("controller", "float32", False),
    "mixed_bfloat16": ("controller", "mixed_bfloat16", False),
    "mixed_float16": ("controller", "mixed_float16", False),
    "xla": ("controller", "float32", True),
    "mixed_bfloat16+xla": ("controller", "mixed_bfloat16", True),
    "mixed_float16+xla": ("controller", "mixed_float16", True),
    "raw_loop": ("raw", "float32", False),
    "keras_fit": ("keras", "float32", False),
}
BASELINE = "float32"

MODEL = {"tiny": dict(image_size=16, filters=8, batch_size=32), "quick": dict(image_size=32, filters=16, batch_size=64),
         "full": dict(image_size=32, filters=32, batch_size=128), "gpu": dict(image_size=64, filters=64, batch_size=256)}
SETTINGS: Dict[str, Dict[str, Any]] = {
    "tiny": {"configs": ("float32", "mixed_bfloat16", "xla"), "check_steps": 20, "check_every": 10, "steps": 40,
             "steps_per_loop": 20, "reps": 1, **MODEL["tiny"]},
    "quick": {"configs": ("float32", "mixed_bfloat16", "xla"), "check_steps": 100, "check_every": 10,
              "steps": 200, "steps_per_loop": 50, "reps": 3, **MODEL["quick"]},
    "full": {"configs": ("float32", "mixed_bfloat16", "xla", "mixed_bfloat16+xla", "raw_loop", "keras_fit"),
             "check_steps": 200, "check_every": 10, "steps": 400, "steps_per_loop": 100, "reps": 5, **MODEL["full"]},
    "gpu": {"configs": ("float32", "mixed_float16", "xla", "mixed_float16+xla", "raw_loop", "keras_fit"),
            "check_steps": 200, "check_every": 10, "steps": 2000, "steps_per_loop": 200, "reps": 5, **MODEL["gpu"]},
}
PRESETS = tuple(SETTINGS)
# The largest relative difference of a loop's mean loss from float32's that counts as tracking it: XLA reorders
# float32 arithmetic only; 16-bit compute (8 bits of mantissa for bfloat16) moves every step a little.
TOLERANCES = {"float32": 1e-6, "raw_loop": 1e-6, "keras_fit": 1e-3, "xla": 1e-3, "mixed_float16": 0.05,
              "mixed_bfloat16": 0.05, "mixed_float16+xla": 0.05, "mixed_bfloat16+xla": 0.05}
GOALS = {
    "correctness": "every configuration's loss curve within its tolerance of float32's (TOLERANCES)",
    "speed": "on a GPU: mixed_float16 and XLA faster than float32; controller_core within a few % of the raw loop",
}


def run(ctx: Context) -> Dict[str, Any]:
    settings = ctx.settings(SETTINGS)
    configs = list(ctx.options.get("candidates") or settings["configs"])
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown accelerator configuration(s) {unknown}; known: {sorted(CONFIGS)}")
    if BASELINE not in configs:
        configs.insert(0, BASELINE)
    model = {k: settings[k] for k in ("image_size", "filters", "batch_size")}
    samples: Dict[str, List[Dict[str, Any]]] = {c: [] for c in configs}
    checks: Dict[str, List[float]] = {}
    with common.WorkerPool() as pool:
        for name in configs:
            pool.start(name.replace(" ", "_").replace("+", "_"), "accel", ctx.scratch_dir)
        ready = pool.wait_ready()
        workers = dict(zip(configs, pool.workers.values()))
        for name, worker in workers.items():
            loop, precision, jit = CONFIGS[name]
            answer = worker.request("setup", timeout_s=900, loop=loop, precision=precision, jit_compile=jit,
                                    check_steps=settings["check_steps"], check_every=settings["check_every"],
                                    **model)
            checks[name] = answer["check_losses"]
            worker.request("train", timeout_s=900, steps=settings["steps_per_loop"],
                           steps_per_loop=settings["steps_per_loop"])  # Warm-up: the measured loop's trace.
        for r in range(settings["reps"]):
            for name in common.rotations(configs, r):
                answer = workers[name].request("train", timeout_s=900, steps=settings["steps"],
                                               steps_per_loop=settings["steps_per_loop"])
                answer.pop("ok", None)
                answer["round"] = r
                samples[name].append(answer)
            common.log(f"accelerators: round {r + 1}/{settings['reps']} done")

    baseline_losses = checks[BASELINE]
    correctness = {}
    for name, losses in checks.items():
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses, baseline_losses))
        correctness[name] = {"max_rel_loss_diff": worst, "tolerance": TOLERANCES[name],
                             "ok": worst <= TOLERANCES[name], "losses": losses}
    steps_per_s = {name: common.spread([row["steps_per_s"] for row in rows]) for name, rows in samples.items()}
    base = [row["steps_per_s"] for row in samples[BASELINE]]
    vs_float32 = {name: common.paired_ratio([row["steps_per_s"] for row in rows], base)
                  for name, rows in samples.items()}
    return {
        "settings": {**settings, "configs": configs, "preset": ctx.preset},
        "model": _describe(model),
        "configs": {name: dict(zip(("loop", "precision", "jit_compile"), CONFIGS[name])) for name in configs},
        "workers_ready_s": ready,
        "vs_float32": vs_float32,
        "steps_per_s": steps_per_s,
        "correctness": correctness,
        "samples": samples,
        "goals": GOALS,
    }


def _describe(model: Dict[str, Any]) -> str:
    from bench.accel_training import describe

    return describe(model)


def markdown(result: Dict[str, Any]) -> str:
    settings = result["settings"]
    rows = []
    for name in settings["configs"]:
        speed, check = result["steps_per_s"][name], result["correctness"][name]
        rows.append([
            name, report.fmt(speed["median"], 4), report.fmt_ratio(result["vs_float32"][name]),
            f"{check['max_rel_loss_diff']:.2e}", f"{check['tolerance']:g}", report.verdict(check["ok"]),
        ])
    return "\n".join([
        f"Model: {result['model']}. Preset `{settings.get('preset', '')}`: {settings['reps']} interleaved rounds of "
        f"{settings['steps']} steps (steps_per_loop {settings['steps_per_loop']}) per configuration; losses of the "
        f"first {settings['check_steps']} steps compared per {settings['check_every']}-step loop.",
        "",
        report.table(["configuration", "steps/s (median)", "× float32", "max relative loss difference",
                      "tolerance", "tracks float32"], rows),
    ])


def plot(ax: Any, result: Dict[str, Any]) -> None:
    every = result["settings"]["check_every"]
    for name, check in result["correctness"].items():
        losses = check["losses"]
        ax.plot([every * (i + 1) for i in range(len(losses))], losses, label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("mean loss of the loop")
    ax.set_title("Loss curves by precision / XLA")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


register(Part(name="accelerators", title="5. Precision and XLA", order=50, run=run, markdown=markdown,
              plots=[plot], goals=GOALS, presets=PRESETS))
