"""The export component: a SavedModel of the chosen checkpoint, committed only when complete and verified.

Its modules: `definition` (its inputs and KFP function, TensorFlow-free) and `runtime` (its `run()`, which imports TensorFlow).
Importing this package imports neither kfp nor TensorFlow.
"""
