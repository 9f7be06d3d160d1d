"""The components' definitions: each one's inputs (`INTERFACE`) and KFP component function, without TensorFlow.

One module per component, like Google Cloud Pipeline Components: its `INTERFACE`
declares every input once (see `tfpipe.components.interface`), and its function is
the lightweight KFP component whose body calls the component's `run()` in
`tfpipe.components.<name>` inside the image. The pipeline builder and `tfpipe specs`
compile these without importing TensorFlow.

To add a component: a module here (an `INTERFACE` and a function whose signature
matches it), a runtime module `tfpipe.components.<name>` with `run()`,
`run_for_kfp()` and an entry point, an entry in `INTERFACES` and
`COMPONENT_FUNCTIONS`, its rows in `docs/inputs.md`, and `tfpipe specs`.
"""

from tfpipe.components.definitions.continuous_eval import INTERFACE as CONTINUOUS_EVAL
from tfpipe.components.definitions.continuous_eval import continuous_eval
from tfpipe.components.definitions.evaluate import INTERFACE as EVALUATE
from tfpipe.components.definitions.evaluate import evaluate
from tfpipe.components.definitions.export import INTERFACE as EXPORT
from tfpipe.components.definitions.export import export
from tfpipe.components.definitions.train import INTERFACE as TRAIN
from tfpipe.components.definitions.train import train

INTERFACES = {"train": TRAIN, "evaluate": EVALUATE, "continuous_eval": CONTINUOUS_EVAL, "export": EXPORT}
COMPONENT_FUNCTIONS = (train, evaluate, continuous_eval, export)

__all__ = [
    "COMPONENT_FUNCTIONS",
    "CONTINUOUS_EVAL",
    "EVALUATE",
    "EXPORT",
    "INTERFACES",
    "TRAIN",
    "continuous_eval",
    "evaluate",
    "export",
    "train",
]
