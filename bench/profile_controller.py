"""Where does a controller spend its per-loop time? ``python -m bench.profile_controller [options]``.

Builds the benchmark's model and data (``bench.worker.Training``) in this process, warms up, then runs
``Controller.train`` under cProfile and prints:

* wall time per loop and per step, against the bare ``tf.function`` call it wraps;
* the functions with the most own time, and the cumulative time of every ``controller_core`` (or ``orbit``)
  function, as ``file:line(function)``.

Examples::

    python -m bench.profile_controller --steps-per-loop 1 --steps 2000
    python -m bench.profile_controller --steps-per-loop 100 --mode async --steps 20000
    python -m bench.profile_controller --candidate orbit      # needs bench/.orbit-pkgs (python -m bench.run)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", choices=("controller", "orbit"), default="controller")
    parser.add_argument("--steps-per-loop", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--mode", choices=("none", "sync", "async"), default="none")
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--stdout-to-devnull", action="store_true", help="drop the controller's log lines")
    args = parser.parse_args()

    from bench import common

    if args.candidate == "orbit":
        sys.path.insert(0, str(common.ORBIT_PKGS))
    from bench import training
    from bench.worker import Training

    real_stdout = sys.stdout
    if args.stdout_to_devnull:
        sys.stdout = open(os.devnull, "w")
    scratch = tempfile.mkdtemp(prefix="tfpipe-profile-")
    state = Training(args.candidate, ckpt_root=scratch, **training.MODEL)
    spl, mode, every = args.steps_per_loop, args.mode, args.ckpt_every
    warm = max(spl, every)
    state.train(spl, mode, every, warm)  # Trace, create the controller.
    controller = state.configs[f"spl{spl}-{mode}-every{every}"]["controller"]
    loop_fn = state.trainer._train_loop_fn
    iterator = state.trainer._train_iter

    import tensorflow as tf

    # The bare call the controller wraps, for reference.
    n_loops = max(1, args.steps // spl)
    t0 = time.perf_counter()
    for _ in range(n_loops):
        loop_fn(iterator, tf.convert_to_tensor(spl, dtype=tf.int32))
    bare = (time.perf_counter() - t0) / n_loops

    profiler = cProfile.Profile()
    start = int(state.global_step.numpy())
    t0 = time.perf_counter()
    profiler.enable()
    controller.train(start + n_loops * spl)
    profiler.disable()
    wall = (time.perf_counter() - t0) / n_loops
    sys.stdout = real_stdout

    print(f"{args.candidate}: steps_per_loop={spl} mode={mode} loops={n_loops}")
    print(f"  bare loop_fn call: {bare * 1e3:.3f} ms/loop; controller.train (under cProfile): {wall * 1e3:.3f} ms/loop "
          f"(+{(wall - bare) * 1e3:.3f} ms/loop, profiler overhead included)")
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(args.top)
    package = "controller_core" if args.candidate == "controller" else f"{os.sep}orbit{os.sep}"
    stats.sort_stats("cumulative").print_stats(package, args.top)
    print(stream.getvalue())


if __name__ == "__main__":
    main()
