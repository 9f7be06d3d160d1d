"""The evaluate component: evaluates one checkpoint (`latest`, `best`, `auto`, a step or a path).

Its modules: `definition` (its inputs and KFP function, TensorFlow-free) and `runtime` (its `run()`, which imports TensorFlow).
Importing this package imports neither kfp nor TensorFlow.
"""
