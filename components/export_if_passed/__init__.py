"""Export, only when a gate passed: a graph component with the exported model out.

Its modules: `definition` (the function that builds the graph from the built components).
Importing this package imports neither kfp nor TensorFlow.
"""
