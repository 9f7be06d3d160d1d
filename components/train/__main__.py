"""`python -m tfpipe.components.train --flag=value ...`: the train component from a shell (flags named as its inputs)."""

from tfpipe.components import entry_point
from tfpipe.components.train import runtime

entry_point.run_entry_point(runtime.INTERFACE, runtime.main)
