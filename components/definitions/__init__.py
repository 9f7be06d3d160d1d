"""The components' definitions: each one's inputs (`INTERFACE`) and KFP component function, without TensorFlow.

One module per component, like Google Cloud Pipeline Components: its `INTERFACE`
declares every input once (see `tfpipe.components.interface`), and its function is
the lightweight KFP component whose body calls the component's `run()` in
`tfpipe.components.<name>` inside the image. The pipeline builder and `tfpipe specs`
compile these without importing TensorFlow.

Which modules are components is declared once, in `tfpipe.components.registry`
(`ROWS`): `INTERFACES` and `COMPONENT_FUNCTIONS` are derived from it. To add a
component, follow docs/design.md ("How to add ... A component").
"""

from tfpipe.components import registry
from tfpipe.components.definitions.continuous_eval import INTERFACE as CONTINUOUS_EVAL
from tfpipe.components.definitions.continuous_eval import continuous_eval
from tfpipe.components.definitions.evaluate import INTERFACE as EVALUATE
from tfpipe.components.definitions.evaluate import evaluate
from tfpipe.components.definitions.export import INTERFACE as EXPORT
from tfpipe.components.definitions.export import export
from tfpipe.components.definitions.train import INTERFACE as TRAIN
from tfpipe.components.definitions.train import train

# Name -> INTERFACE and the KFP functions of the registry's components (kind `component`), in its order.
INTERFACES = {row.name: row.interface() for row in registry.rows(registry.COMPONENT)}
COMPONENT_FUNCTIONS = tuple(row.kfp_function() for row in registry.rows(registry.COMPONENT))

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
