"""`python -m tfpipe.components.export --flag=value ...`: the export component from a shell (flags named as its inputs)."""

from tfpipe.components import entry_point
from tfpipe.components.export import runtime

entry_point.run_entry_point(runtime.INTERFACE, runtime.main)
