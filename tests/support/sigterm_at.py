"""Runs a component entry point with SIGTERM delivered to itself at a chosen point.

    python -m tests.support.sigterm_at MODULE:FUNCTION CALL_NUMBER COMPONENT [--flags...]

The function (e.g. `tensorflow.io.gfile.copy`) is wrapped so that its CALL_NUMBER-th
call sends SIGTERM to this process before running; the component (e.g.
`tfpipe.components.export`) then runs as `python -m COMPONENT --flags...` would.
"""

import importlib
import os
import runpy
import signal
import sys


def main() -> None:
    target, call_number, component, *flags = sys.argv[1:]
    module_name, _, attr = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = attr.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == int(call_number):
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    setattr(owner, name, wrapped)
    sys.argv = [component, *flags]
    runpy.run_module(component, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
