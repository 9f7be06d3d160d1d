"""The components' definitions together: each one's inputs (`INTERFACE`) and KFP component function, without TensorFlow.

Each component declares them in its own package (like Google Cloud Pipeline Components): its `INTERFACE`, in
`tfpipe.components.<name>.inputs`, declares every input once (see `tfpipe.components.interface`), and its function,
in `tfpipe.components.<name>.definition`, is the lightweight KFP component whose body calls `run()` of
`tfpipe.components.<name>.runtime` inside the image. The
pipeline builder and `tfpipe specs` compile these without importing TensorFlow.

Which packages are components is declared once, in `tfpipe.components.registry` (`ROWS`): `INTERFACES` and
`COMPONENT_FUNCTIONS` are derived from it. To add a component, follow docs/design.md ("How to add ... A component").
"""

from tfpipe.components import registry
from tfpipe.components.continuous_eval.inputs import INTERFACE as CONTINUOUS_EVAL
from tfpipe.components.continuous_eval.definition import continuous_eval
from tfpipe.components.evaluate.inputs import INTERFACE as EVALUATE
from tfpipe.components.evaluate.definition import evaluate
from tfpipe.components.export.inputs import INTERFACE as EXPORT
from tfpipe.components.export.definition import export
from tfpipe.components.train.inputs import INTERFACE as TRAIN
from tfpipe.components.train.definition import train

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
