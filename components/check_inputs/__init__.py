"""The check-inputs step: every input a pipeline run was given, checked once, fast, before anything runs.

Its modules: `inputs` (its `INTERFACE`, free of kfp and TensorFlow), `definition` (its KFP function) and `runtime`
(its `run()` and entry point, which import TensorFlow, not kfp).
Importing this package imports neither kfp nor TensorFlow.
"""
