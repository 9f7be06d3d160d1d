"""The model-dir step: the run directory, given or derived from the pipeline root.

Its modules: `definition` (its KFP function; it needs no TensorFlow, so it has no runtime module).
Importing this package imports neither kfp nor TensorFlow.
"""
