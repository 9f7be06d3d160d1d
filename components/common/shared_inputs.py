"""Inputs that several components share, declared once (see `tfpipe.components.interface`)."""

from tfpipe import checks
from tfpipe.components.common import data
from tfpipe.components.common import thresholds
from tfpipe.components.interface import Input

TASK = Input(
    "task", str, "Registered task name (e.g. digits) or package.module:factory of a declared tfpipe task.",
    check=checks.check_task)
MODEL_DIR = Input(
    "model_dir", str, "Run directory shared by all steps: gs://bucket/path, /gcs/bucket/path or a local path.",
    check=checks.check_uri)
TASK_CONFIG = Input(
    "task_config", str, "The task's config as a JSON object.", default="{}", check=checks.check_json_object)
TASK_PACKAGE = Input(
    "task_package", str, "A wheel (gs:// or a local path) to pip-install before the task is imported; an sdist where the image allows it.",
    default="", check=checks.check_package_uri)
DISTRIBUTION_STRATEGY = Input(
    "distribution_strategy", str, "TensorFlow distribution strategy of the step.", default="default",
    choices=checks.STRATEGIES)
EVAL_STEPS = Input(
    "eval_steps", int, "Steps per evaluation; -1 for the whole evaluation dataset.", default=-1,
    check=checks.check_eval_steps)
THRESHOLDS = Input(
    "thresholds", str, 'Metric thresholds such as {"accuracy": ">= 0.9"}: the gate for export.', default="{}",
    check=thresholds.parse_thresholds)
PRECISION = Input(
    "precision", str, "Compute precision of the generic runners: float32, mixed_float16 (GPUs, loss scaling) or "
    "mixed_bfloat16 (TPUs); variables, checkpoints and exports stay float32.", default="float32",
    choices=checks.PRECISIONS)
JIT_COMPILE = Input(
    "jit_compile", bool, "Compile the generic train/eval step with XLA.", default=False, check=checks.check_bool)
ALLOW_DIFFERENT_CONFIG = Input(
    "allow_different_config", bool, "Evaluate with a task config that differs from training's (normally refused).",
    default=False, check=checks.check_bool, pipeline=False)
TRAIN_DATA = Input(
    "train_data", str, "Training data (a KFP Dataset; entry point: its URI): handed to the task as `data.train`; "
    "its content fingerprint is recorded with the run.", default="", check=data.check_data_ref, pipeline=False,
    artifact="Dataset")
EVAL_DATA = Input(
    "eval_data", str, "Validation data (a KFP Dataset; entry point: its URI): handed to the task as `data.eval`; "
    "its content fingerprint is recorded with the run.", default="", check=data.check_data_ref, pipeline=False,
    artifact="Dataset")
TEST_DATA = Input(
    "test_data", str, "Held-out test data (a KFP Dataset; entry point: its URI): handed to the task as "
    "`data.test` (not recorded with the run).", default="", check=data.check_data_ref, pipeline=False,
    artifact="Dataset")
DATA = (TRAIN_DATA, EVAL_DATA)
