"""The model-registration step: what Vertex AI Model Registry's upload is given for a gated export.

Its modules: `definition` (its KFP function, TensorFlow-free) and `runtime` (its `run()`, which imports TensorFlow).
Importing this package imports neither kfp nor TensorFlow.
"""
