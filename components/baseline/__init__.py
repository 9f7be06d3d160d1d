"""The beats-baseline step: compares the best checkpoint with a model exported by tfpipe before.

Its modules: `definition` (its KFP function, TensorFlow-free) and `runtime` (its `run()`, which imports TensorFlow).
Importing this package imports neither kfp nor TensorFlow.
"""
