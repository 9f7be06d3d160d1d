"""What `tfpipe run-local` prints without `--verbose`: each step's own progress lines, not kfp.local's chatter.

kfp.local streams every step's whole output (its executor input and output JSON, TensorFlow's C++ banner and
warnings) through this process's stdout. `QuietOutput` passes on the lines a reader wants (kfp.local's task
status lines, tfpipe's own `train | step ...`-style progress and one-line errors, a traceback's final line) and
drops the rest; it also remembers the last error line of the step that was running, so that a failed run can end
with that step's own error.
"""

import contextlib
import io
import re
import sys
import warnings
from typing import Iterator, Optional, TextIO

from tfpipe import checks
from tfpipe.components import registry
from tfpipe.components.train import tfjob as tfjob_train

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATUS = re.compile(r"(Executing task|Task '.*' finished with status|Pipeline '.*' finished with status|"
                     r"Running pipeline)")
_TASK = re.compile(r"Executing task '([^']+)'")
# tfpipe's own lines: `train | step ...`, ` eval | ...`, `check_inputs | ...`, and `<step>: <message>` errors
# (`<step>: refused: ...` for a step that declined, `<step>: retrying ...` before a retry). The steps: every
# component of the registry, the evaluator's `eval` lines, and the TFJob launcher's (`tfjob`, `train_with_tfjob`).
_STEPS = "(" + "|".join(sorted({*registry.names(), "eval", "tfjob", tfjob_train.LAUNCHER_NAME}, key=len,
                                reverse=True)) + ")"
_PROGRESS = re.compile(rf"^\s*{_STEPS}\s*\|")
_STEP_MESSAGE = re.compile(rf"^{_STEPS}: ")
_TRACEBACK_END = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")


class QuietOutput(io.TextIOBase):
    """A text stream that writes the wanted lines of what it is given to `target`."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._pending = ""
        self.task: Optional[str] = None
        self.last_error: Optional[str] = None
        self.input_error = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw)
        body = line.strip()
        task = _TASK.search(line)
        if task:
            self.task, self.last_error, self.input_error = task.group(1), None, False
        if _STATUS.search(line):
            self._target.write(body.split(" - INFO - ")[-1] + "\n")
        elif _STEP_MESSAGE.match(body) and " | " not in body.split(":", 1)[0]:
            self._target.write(f"    {body}\n")
            said = body.split(":", 1)[1].strip()
            if not said.startswith("retrying"):
                self.last_error, self.input_error = body, not said.startswith(checks.REFUSED_PREFIX.strip())
        elif _PROGRESS.match(body):
            self._target.write(f"    {body}\n")
        elif _TRACEBACK_END.fullmatch(body) and not body.startswith(("WARNING", "UserWarning", "RuntimeWarning")):
            self.last_error, self.input_error = body, False
            self._target.write(f"    {body}\n")


@contextlib.contextmanager
def maybe_quiet(verbose: bool) -> Iterator[Optional[QuietOutput]]:
    """Filters stdout (and silences Python warnings) unless `verbose`; yields the filter, or None."""
    if verbose:
        yield None
        return
    quiet = QuietOutput(sys.stdout)
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        yield quiet
