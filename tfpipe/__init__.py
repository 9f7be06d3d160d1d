"""tfpipe: TensorFlow training on Kubeflow Pipelines and Vertex AI.

The one import package of the `tfpipe` distribution. Its sub-packages live in the
repository's top-level folders and are installed under this name, so that tfpipe
imports beside a project's own `components/` and `pipelines/` packages:

* `tfpipe.controller_core`: the Orbit-compatible outer loop
  (`import tfpipe.controller_core as orbit`); imports TensorFlow, never kfp.
* `tfpipe.components`: the KFP components (train, evaluate, continuous_eval,
  export, ...: `tfpipe.components.registry`), their entry points (`python -m tfpipe.components.train ...`), tasks,
  and `load_component` for the compiled specs.
* `tfpipe.pipelines`: the pipeline, resource profiles, compile and submit, and
  the `tfpipe` command; never imports TensorFlow.
* `tfpipe.component_specs`: the compiled component YAML, as package data.

Importing `tfpipe` itself imports nothing else.
"""

__version__ = "0.1.0"
