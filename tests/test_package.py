"""The package surface: Orbit's names at the same places; controller_core never imports kfp."""

import pathlib
import subprocess
import sys

import tfpipe.controller_core as orbit

ROOT = pathlib.Path(__file__).resolve().parents[1]

ORBIT_ROOT_NAMES = [
    "Action", "Controller", "AbstractTrainer", "AbstractEvaluator", "StandardTrainer", "StandardEvaluator",
    "StandardTrainerOptions", "StandardEvaluatorOptions", "actions", "utils",
]
ORBIT_UTILS_NAMES = [
    "SummaryManager", "SummaryManagerInterface", "create_global_step", "make_distributed_dataset", "get_value",
    "EpochHelper", "create_loop_fn", "create_tf_while_loop_fn", "LoopFnWithSummaries", "OptionalSummariesFunction",
]
ORBIT_ACTIONS_NAMES = [
    "ConditionalAction", "NewBestMetric", "JSONPersistedValue", "ExportFileManager", "ExportSavedModel",
    "SaveCheckpointIfPreempted", "PeriodicAction",
]


def test_orbit_names_are_exported():
    for name in ORBIT_ROOT_NAMES:
        assert hasattr(orbit, name), name
    for name in ORBIT_UTILS_NAMES:
        assert hasattr(orbit.utils, name), name
    for name in ORBIT_ACTIONS_NAMES:
        assert hasattr(orbit.actions, name), name
    from tfpipe.controller_core import controller, runner, standard_runner  # Orbit's module names.

    assert controller.StepTimer and runner.Output and standard_runner.StandardTrainer


def test_controller_core_never_imports_kfp():
    for path in (ROOT / "controller_core").rglob("*.py"):
        text = path.read_text()
        assert "import kfp" not in text and "from kfp" not in text, path
    out = subprocess.run(
        [sys.executable, "-c", "import sys, tfpipe.controller_core; print('kfp' in sys.modules)"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    assert out.stdout.strip() == "False"
