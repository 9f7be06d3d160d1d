"""curvefit: an example tfpipe task package (`--task curvefit.task:build`)."""
