"""The continuous_eval component: evaluates every checkpoint of a run while it trains, until it is done.

Its modules: `inputs` (its `INTERFACE`, free of kfp and TensorFlow), `definition` (its KFP function) and `runtime`
(its `run()` and entry point, which import TensorFlow, not kfp).
Importing this package imports neither kfp nor TensorFlow.
"""
