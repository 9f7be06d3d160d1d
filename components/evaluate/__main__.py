"""`python -m tfpipe.components.evaluate --flag=value ...`: the evaluate component from a shell (flags named as its inputs)."""

from tfpipe.components import entry_point
from tfpipe.components.evaluate import runtime

entry_point.run_entry_point(runtime.INTERFACE, runtime.main)
