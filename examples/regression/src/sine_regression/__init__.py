"""An example tfpipe task: regression of y = sin(x) from noisy samples (see `task.build`)."""
