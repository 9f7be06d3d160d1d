"""controller_core: an Orbit-compatible outer loop for TensorFlow training.

Code written against TensorFlow Orbit runs unchanged with
`import controller_core as orbit`: the same `Controller`, runners, actions and
utilities, with Orbit's silent failure modes fixed (see `controller.py`). This
package imports TensorFlow and never kfp; every path may be a `gs://`, `/gcs/`
or local URI.
"""

from controller_core import actions
from controller_core import preemption
from controller_core import utils
from controller_core.controller import Action
from controller_core.controller import Controller
from controller_core.controller import StepTimer
from controller_core.runner import AbstractEvaluator
from controller_core.runner import AbstractTrainer
from controller_core.runner import Output
from controller_core.standard_runner import StandardEvaluator
from controller_core.standard_runner import StandardEvaluatorOptions
from controller_core.standard_runner import StandardTrainer
from controller_core.standard_runner import StandardTrainerOptions

__all__ = [
    "AbstractEvaluator",
    "AbstractTrainer",
    "Action",
    "Controller",
    "Output",
    "StandardEvaluator",
    "StandardEvaluatorOptions",
    "StandardTrainer",
    "StandardTrainerOptions",
    "StepTimer",
    "actions",
    "preemption",
    "utils",
]
