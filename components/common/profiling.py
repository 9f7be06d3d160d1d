"""Profiling a range of training steps: a TensorFlow profiler trace that TensorBoard's Profile tab reads.

`ProfileSteps` is the train component's `profile_steps` input at work. It starts
`tf.profiler.experimental` at the loop boundary where the range begins and stops
it at the one where it ends (the train loops are cut there, `steps_per_loop`,
and end on multiples of it otherwise), so the trace holds exactly those steps. The profiler writes
`<logdir>/plugins/profile/<timestamp>/<host>.xplane.pb` into the training
summaries' directory (`<model_dir>/train/`), the layout TensorBoard's profile
plugin lists as a run; with `$AIP_TENSORBOARD_LOG_DIR` set the trace is copied
there too, for Vertex TensorBoard. A run resumed inside the range traces what is
left of it. Off (empty `profile_steps`), nothing is created and the loops keep
their length. A profiler that cannot start (another session holds it) is a
warning, never a failed training.
"""

from typing import Callable, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf


PLUGIN_DIR = "plugins/profile"


class ProfileSteps:
    """Traces the global steps `[start, stop)` of training into a TensorBoard log directory.

    Use it as a train action (it stops or starts the profiler after each loop),
    around `Controller.train` (`with profile:` starts it when training begins at
    the range, and stops it however training ends), and give the controller
    `profile.steps_per_loop(n)` so that loop boundaries fall on the range's ends.
    """

    def __init__(self, steps: Tuple[int, int], logdir: str, *, global_step: tf.Variable,
                 copies: Sequence[str] = ()) -> None:
        """Initializes the profiler action.

        Args:
            steps: `(start, stop)`: trace the steps that take the global step from `start` to `stop`.
            logdir: The TensorBoard log directory (the trace goes to `<logdir>/plugins/profile/<run>/`).
            global_step: The training's step counter.
            copies: More log directories the finished trace is copied into (same layout).
        """
        self.start, self.stop = steps
        self.logdir = logdir
        self.global_step = global_step
        self.copies = tuple(copies)
        self.trace_dirs: list = []  # Where finished traces went (the run directory's first).
        self._tracing = False
        self._done = False
        self._runs_before: set = set()

    def steps_per_loop(self, steps_per_loop: int) -> Callable[[int], int]:
        """`steps_per_loop` for the controller, cut so that a loop ends at `start` and at `stop`, and otherwise at
        the multiples of `steps_per_loop` (so the loops, and the checkpoints at their ends, keep their places)."""

        def cut(step: int) -> int:
            grid = (step // steps_per_loop + 1) * steps_per_loop
            return min([grid] + [b for b in (self.start, self.stop) if b > step]) - step

        return cut

    def __enter__(self) -> "ProfileSteps":
        self._maybe_start(int(self.global_step.numpy()))
        return self

    def __exit__(self, *exc: object) -> None:
        self._maybe_stop(int(self.global_step.numpy()), force=True)

    def __call__(self, output: object) -> None:
        """The train action: after a loop, stops the trace at the end of the range or starts it at its start."""
        step = int(self.global_step.numpy())
        self._maybe_stop(step)
        self._maybe_start(step)

    def _runs(self) -> set:
        directory = f"{self.logdir}/{PLUGIN_DIR}"
        return set(tf.io.gfile.listdir(directory)) if tf.io.gfile.isdir(directory) else set()

    def _maybe_start(self, step: int) -> None:
        if self._tracing or self._done or not self.start <= step < self.stop:
            return
        self._runs_before = self._runs()
        try:
            tf.profiler.experimental.start(self.logdir)
        except tf.errors.OpError as error:  # E.g. another profiler session is running in this process.
            self._done = True
            logging.warning("Profiler not started: %s", error)
            print(f"profile | step: {step} | could not start the profiler ({error.message}); training goes on "
                  "without a trace", flush=True)
            return
        self._tracing = True
        print(f"profile | step: {step} | tracing to step {self.stop} into {self.logdir}", flush=True)

    def _maybe_stop(self, step: int, force: bool = False) -> None:
        if not self._tracing or not (force or step >= self.stop):
            return
        tf.profiler.experimental.stop()
        self._tracing = False
        self._done = True
        for run in sorted(self._runs() - self._runs_before):
            source = f"{self.logdir}/{PLUGIN_DIR}/{run}"
            self.trace_dirs.append(source)
            for copy in self.copies:
                self.trace_dirs.append(_copy_tree(source, f"{copy}/{PLUGIN_DIR}/{run}"))
        print(f"profile | step: {step} | trace written: {', '.join(self.trace_dirs) or 'nothing'}", flush=True)


def _copy_tree(source: str, destination: str) -> str:
    for directory, _, files in tf.io.gfile.walk(source):
        target = destination + directory[len(source):]
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(f"{directory}/{name}", f"{target}/{name}", overwrite=True)
    return destination


def maybe_profile(steps: Optional[Tuple[int, int]], logdir: Optional[str], *, global_step: tf.Variable,
                  copies: Sequence[str] = ()) -> Optional[ProfileSteps]:
    """A `ProfileSteps` for `steps` into `logdir`, or None when either is None (profiling off, or no chief)."""
    if steps is None or logdir is None:
        return None
    return ProfileSteps(steps, logdir, global_step=global_step, copies=copies)
