"""The continuous_eval component: evaluates every checkpoint of a run while it trains, until it is done.

Its modules: `definition` (its inputs and KFP function, TensorFlow-free) and `runtime` (its `run()`, which imports TensorFlow).
Importing this package imports neither kfp nor TensorFlow.
"""
