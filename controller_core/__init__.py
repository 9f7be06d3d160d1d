"""controller_core: an Orbit-compatible outer loop for TensorFlow training.

Code written against TensorFlow Orbit runs unchanged with
`import tfpipe.controller_core as orbit`: the same `Controller`, runners, actions and
utilities, with Orbit's silent failure modes fixed (the README lists each difference). This
package imports TensorFlow and never kfp; every path may be a `gs://`, `/gcs/`
or local URI.
"""

from tfpipe.controller_core import actions
from tfpipe.controller_core import continuous_eval
from tfpipe.controller_core import preemption
from tfpipe.controller_core import utils
from tfpipe.controller_core.controller import Action
from tfpipe.controller_core.controller import Controller
from tfpipe.controller_core.controller import StepTimer
from tfpipe.controller_core.runner import AbstractEvaluator
from tfpipe.controller_core.runner import AbstractTrainer
from tfpipe.controller_core.runner import Output
from tfpipe.controller_core.standard_runner import StandardEvaluator
from tfpipe.controller_core.standard_runner import StandardEvaluatorOptions
from tfpipe.controller_core.standard_runner import StandardTrainer
from tfpipe.controller_core.standard_runner import StandardTrainerOptions

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
    "continuous_eval",
    "preemption",
    "utils",
]
