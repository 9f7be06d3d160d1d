"""The evaluate component: evaluates one checkpoint (`latest`, `best`, `auto`, a step or a path).

Its modules: `inputs` (its `INTERFACE`, free of kfp and TensorFlow), `definition` (its KFP function) and `runtime`
(its `run()` and entry point, which import TensorFlow, not kfp).
Importing this package imports neither kfp nor TensorFlow.
"""
