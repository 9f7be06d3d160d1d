"""The check-inputs step: every input a pipeline run was given, checked once, fast, before anything runs.

Its modules: `definition` (its inputs and KFP function, TensorFlow-free) and `runtime` (its `run()`, which imports TensorFlow).
Importing this package imports neither kfp nor TensorFlow.
"""
