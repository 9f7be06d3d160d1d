"""`python -m tfpipe.components.continuous_eval --flag=value ...`: the continuous_eval component from a shell (flags named as its inputs)."""

from tfpipe.components import entry_point
from tfpipe.components.continuous_eval import runtime

entry_point.run_entry_point(runtime.INTERFACE, runtime.main)
