"""The train component: trains a task in a run directory, resuming from its latest checkpoint.

Its modules: `inputs` (its `INTERFACE`, free of kfp and TensorFlow), `definition` (its KFP function), `runtime`
(`run()` and the entry point, which import TensorFlow, not kfp), `outputs` (what a train step reports, TensorFlow-free)
and `tfjob` (the multi-worker launcher on GKE, generated from `inputs` and `definition`).
Importing this package imports neither kfp nor TensorFlow.
"""
