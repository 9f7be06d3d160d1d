"""The train component: trains a task in a run directory, resuming from its latest checkpoint.

Its modules: `definition` (its inputs and KFP function), `runtime` (`run()`), `outputs` (what a train step reports, TensorFlow-free) and `tfjob` (the multi-worker launcher on GKE, generated from `definition`).
Importing this package imports neither kfp nor TensorFlow.
"""
