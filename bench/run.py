"""The benchmark runner: ``python -m bench.run [--quick] [--out bench/results] [--parts a,b]``.

Runs the registered parts (``bench/parts/__init__.py``) and writes, into ``--out``:

* ``latest.json``: every part's result under ``parts.<name>``, plus the headline ratios at the top level
  (``controller_vs_raw``, ``controller_vs_orbit``: steps_per_loop (a string) -> ratio of steps/s, higher is better);
* ``latest.md``: one Markdown section per part, goals next to the numbers;
* ``latest.png``: the parts' plots (needs matplotlib: ``pip install -e '.[bench]'``).

Presets: ``--quick`` (a subset, under 5 minutes on 2 cores), the default ``full`` (up to about 30 minutes), and
``--preset tiny`` (seconds; for ``tests/test_bench.py``). The machine is assumed to be shared and noisy: every
comparison interleaves its candidates and reports medians of ratios measured in the same run. Goals are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench import common
from bench import report
from bench.parts import Context, load_parts

SCHEMA_VERSION = 1


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="run the quick subset (same as --preset quick)")
    parser.add_argument("--preset", choices=("tiny", "quick", "full", "gpu"),
                        help="default: full (quick with --quick); gpu: the parts that have a GPU preset, for a "
                             "machine with an NVIDIA GPU")
    parser.add_argument("--out", default=None, help="output directory (default: bench/results, bench/results/gpu "
                                                     "for --preset gpu)")
    parser.add_argument("--parts", default="", help="comma-separated part names (default: all)")
    parser.add_argument("--reps", type=int, help="override every part's number of interleaved rounds")
    parser.add_argument(
        "--orbit",
        choices=("install", "if-present", "skip"),
        help="Orbit for the side-by-side: install into bench/.orbit-pkgs when missing (default; tiny: if-present)",
    )
    parser.add_argument(
        "--candidates",
        help="controller_overhead: comma-separated training candidates (raw, raw_loop, controller, "
        "controller_whatif, orbit, keras); default: the preset's",
    )
    parser.add_argument("--tf-threads", type=int, help="controller_overhead: TF intra/inter-op threads per worker")
    parser.add_argument("--modes", help="controller_overhead: comma-separated checkpoint modes (none, sync, async)")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch dir (worker logs, checkpoints)")
    parser.add_argument("--list", action="store_true", help="list the registered parts and exit")
    args = parser.parse_args(argv)
    if args.quick and args.preset not in (None, "quick"):
        parser.error("--quick conflicts with --preset " + args.preset)
    args.preset = args.preset or ("quick" if args.quick else "full")
    args.orbit = args.orbit or ("if-present" if args.preset == "tiny" else "install")
    args.out = args.out or str(common.BENCH_DIR / "results" / ("gpu" if args.preset == "gpu" else ""))
    return args


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    registry = load_parts()
    if args.list:
        for name, part in registry.items():
            print(f"{name}: {part.title}")
        return 0
    selected = [p.strip() for p in args.parts.split(",") if p.strip()] or [
        name for name, part in registry.items() if args.preset in part.presets]
    unknown = [p for p in selected if p not in registry]
    if unknown:
        print(f"unknown part(s) {unknown}; registered: {list(registry)}", file=sys.stderr)
        return 2
    without = [p for p in selected if args.preset not in registry[p].presets]
    if without:
        print(f"part(s) {without} have no preset {args.preset!r}", file=sys.stderr)
        return 2

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tfpipe-bench-"))
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    options = {}
    for name in ("candidates", "modes"):
        if getattr(args, name):
            options[name] = tuple(v.strip() for v in getattr(args, name).split(",") if v.strip())
    if args.tf_threads:
        options["tf_threads"] = args.tf_threads
    ctx = Context(preset=args.preset, out_dir=out_dir, scratch_dir=scratch, orbit_policy=args.orbit, reps=args.reps,
                  options=options)
    started = time.time()
    t0 = time.perf_counter()
    common.log(f"preset {args.preset}; parts {selected}; scratch {scratch}")

    results: Dict[str, Any] = {}
    failed = []
    for name in selected:
        part = registry[name]
        common.log(f"=== {part.title} ===")
        part_t0 = time.perf_counter()
        try:
            result = part.run(ctx)
        except Exception as error:  # One broken part must not lose the others' numbers.
            traceback.print_exc()
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
            failed.append(name)
        result["wall_s"] = time.perf_counter() - part_t0
        results[name] = result
        common.log(f"{name}: done in {result['wall_s']:.1f} s")

    wall_s = time.perf_counter() - t0
    overhead = results.get("controller_overhead", {})
    document: Dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_unix": started,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "command": command,
        "preset": args.preset,
        "wall_s": wall_s,
        "environment": common.environment_info(),
        "goals": {name: registry[name].goals for name in selected if registry[name].goals},
        # Headline ratios (steps_per_loop -> steps/s ratio, higher is better), copied from the part.
        "controller_vs_raw": overhead.get("controller_vs_raw", {}),
        "controller_vs_orbit": overhead.get("controller_vs_orbit", {}),
        "parts": results,
        "failed_parts": failed,
    }

    md = [
        "# tfpipe benchmarks",
        "",
        f"`{command}` — preset **{args.preset}**, {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, "
        f"wall {wall_s / 60:.1f} min. Machine: {document['environment'].get('cpu_count')} CPUs, "
        f"load average at start {document['environment'].get('load_average_at_start')}, "
        f"TensorFlow {document['environment'].get('tensorflow')}, tf-keras {document['environment'].get('tf-keras')}, "
        f"Python {document['environment'].get('python')}.",
        "",
        "Numbers on a shared machine are noisy: compare the ratios (candidates interleaved, same run), not absolute "
        "numbers across runs. Goals are targets, not assertions.",
    ]
    plots = []
    for name in selected:
        part, result = registry[name], results[name]
        md += ["", f"## {part.title}", ""]
        if "error" in result:
            md.append(f"**Failed**: `{result['error']}`")
            continue
        try:
            md.append(part.markdown(result))
        except Exception as error:
            traceback.print_exc()
            md.append(f"(report failed: {type(error).__name__}: {error})")
        plots += [(part.title, plot, result) for plot in part.plots]
    png = out_dir / "latest.png"
    if png.exists():
        png.unlink()
    plot_problem = report.write_figure(png, plots)
    document["plot"] = None if plot_problem else png.name
    if plot_problem:
        document["plot_skipped"] = plot_problem
        md += ["", f"(No plot: {plot_problem}.)"]
        common.log(f"no plot: {plot_problem}")
    else:
        md += ["", f"![benchmarks]({png.name})"]

    (out_dir / "latest.json").write_text(json.dumps(_clean(document), indent=1, sort_keys=False) + "\n")
    (out_dir / "latest.md").write_text("\n".join(md) + "\n")
    if args.keep_scratch:
        common.log(f"scratch kept: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(md))
    common.log(f"wrote {out_dir / 'latest.json'}, latest.md, {'latest.png' if not plot_problem else 'no png'}; "
               f"wall {wall_s:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
