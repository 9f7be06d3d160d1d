"""The run config: which task, effective task config and precision a run directory was trained with.

Training records it once in `<model_dir>/run_config.json`, after every check passed
and the task was built, so that a run with a bad config leaves nothing behind. Every
later step compares its own task and effective config (defaults filled in) with it
before any work: training refuses a different one (it would mix two models in one
run directory; another `precision` too, as its checkpoints would lack or drop the
loss scale), and the evaluators refuse one that differs in anything but the
task's evaluation-only keys (e.g. another data split that may overlap the training
data) unless `allow_different_config` is set; they may evaluate in any precision
(variables are float32 in all of them). A run config without `precision` was
trained in float32. A value the task config takes from the environment
(`{"from_env": NAME}`) is recorded and compared as that reference, never as its value
(see `tfpipe.components.tasks.config`): a rotated secret is the same config.

A run given data inputs (`train_data`, `eval_data`) records their content
fingerprints under `data` (`with_data`, `tfpipe.components.common.data_identity`), never
their URIs: the same data at another URI (a new pipeline run's artifact) is the same
run config, changed data is a difference like a changed config key. A step given
no data input compares nothing for it only where `skip_absent_data` says so
(export, which evaluates nothing).
"""

import json
import os
from typing import Any, Dict, Mapping, Optional

from absl import logging
import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common import data_identity
from tfpipe.components.tasks import Task
from tfpipe.components.tasks import config as config_lib
from tfpipe.components.tasks.packages import TaskPackage
from tfpipe.controller_core import run_dir

RUN_CONFIG = "run_config.json"
PACKAGE_SHA256 = "task_package_sha256"


def run_config(task_name: str, task: Task, given: Mapping[str, Any], precision: str = "float32",
               package: Optional[TaskPackage] = None) -> Dict[str, Any]:
    """What a run records: the task's name, its effective config (the given one when the task has none), the
    precision it trains in, and the SHA-256 of its `task_package` file when it has one; values from the
    environment stay `{"from_env": NAME}` references."""
    effective = dict(task.config if task.config is not None else given)
    effective.update({key: dict(value) for key, value in given.items()
                      if key in effective and config_lib.is_from_env(value)})
    config = {"task": task_name, "task_config": config_lib.stored_view(effective), "precision": precision}
    if package is not None:
        config[PACKAGE_SHA256] = package.sha256
    return config


def _check_package(model_dir: str, stored: Mapping[str, Any], wanted: Mapping[str, Any], *, for_training: bool,
                   allow_different: bool) -> None:
    """Refuses a `task_package` file other than the one `model_dir` was trained with (by SHA-256)."""
    if PACKAGE_SHA256 not in stored or stored[PACKAGE_SHA256] == wanted.get(PACKAGE_SHA256):
        return  # Trained without a package (or by an older version, which recorded none), or the same file.
    here = f"sha256 {wanted[PACKAGE_SHA256]}" if wanted.get(PACKAGE_SHA256) else "no task_package"
    described = f"`model_dir` ({model_dir}) was trained with the task_package of sha256 {stored[PACKAGE_SHA256]}; " \
                f"this step has {here}"
    if allow_different and not for_training:
        print(f"warning | {described} (allow_different_config)", flush=True)
        return
    raise checks.InputError(
        f"{described}: another package runs other code. Give the package file training used, or train in a new "
        "`model_dir`" + ("" if for_training else ", or set `allow_different_config` to evaluate with "
                         "this one on purpose") + ". Nothing was changed.")


def with_data(config: Mapping[str, Any], identity: Mapping[str, Any]) -> Dict[str, Any]:
    """`config` (a `run_config(...)`) with the data inputs' fingerprints (`data_identity.identify`), if any."""
    return {**config, "data": dict(identity)} if identity else dict(config)


def _data_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any], skip_absent: bool) -> list:
    """The data inputs whose fingerprints differ, in words."""
    stored_data, wanted_data = stored.get("data") or {}, wanted.get("data") or {}
    found = []
    for name in data_identity.RECORDED:
        if skip_absent and name not in wanted_data:
            continue
        difference = data_identity.compare(stored_data.get(name), wanted_data.get(name), name)
        if difference:
            found.append(difference)
    return found


def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any], ignore: Any,
                 for_training: bool) -> Dict[str, Any]:
    differ: Dict[str, Any] = {}
    if stored.get("task") != wanted["task"]:
        differ["task"] = (stored.get("task"), wanted["task"])
    precision = (stored.get("precision", "float32"), wanted.get("precision", "float32"))
    if for_training and precision[0] != precision[1]:
        differ["precision"] = precision
    stored_config, wanted_config = stored.get("task_config") or {}, wanted["task_config"]
    for key in sorted(set(stored_config) | set(wanted_config)):
        if key in ignore or key not in stored_config:  # Keys a run config of an older version did not record.
            continue
        if config_lib.is_from_env(wanted_config.get(key)) and not config_lib.is_from_env(stored_config[key]):
            continue  # An older version recorded the value itself; a reference is compared by name only.
        if stored_config[key] != wanted_config.get(key, "<not set>"):
            differ[f"task_config[{key!r}]"] = (stored_config[key], wanted_config.get(key, "<not set>"))
    return differ


def check_run_config(
    model_dir: str, wanted: Mapping[str, Any], *, for_training: bool, eval_only_keys: Any = (),
    allow_different: bool = False, skip_absent_data: bool = False,
) -> Optional[Dict[str, Any]]:
    """Compares this step's run config with the one `model_dir` was trained with.

    Args:
        model_dir: The run directory.
        wanted: This step's `run_config(...)`.
        for_training: Training compares every key; evaluators skip `eval_only_keys`.
        eval_only_keys: The task's evaluation-only config keys.
        allow_different: Evaluators: warn instead of refusing.
        skip_absent_data: Compare only the data inputs this step was given (export).

    Returns:
        The stored run config, or None when the run has none yet.

    Raises:
        checks.InputError: If they differ (naming each difference, secrets redacted) and that is not allowed.
    """
    stored = run_dir.read_json(os.path.join(model_dir, RUN_CONFIG))
    if stored is None:
        return None
    _check_package(model_dir, stored, wanted, for_training=for_training, allow_different=allow_different)
    differ = _differences(stored, wanted, () if for_training else set(eval_only_keys), for_training)
    data_differ = _data_differences(stored, wanted, skip_absent_data)
    if not differ and not data_differ:
        return stored
    described = "; ".join([*(f"{key}: {json.dumps(checks.redacted(key, a))} there, "
                             f"{json.dumps(checks.redacted(key, b))} here" for key, (a, b) in differ.items()),
                           *(f"data {d}" for d in data_differ)])
    if for_training:
        raise checks.InputError(
            f"`model_dir` ({model_dir}) was trained with another task config ({checks.clipped(described)}). Use "
            "a new `model_dir`, or the same `task`, `task_config`, `precision` and data (`train_data`, `eval_data`: "
            "the same content, at any URI); nothing was changed."
        )
    if allow_different:
        logging.warning("Evaluating %s with a task config that differs from training's: %s", model_dir, described)
        print(f"warning | the task config differs from training's (allow_different_config): {described}", flush=True)
        return stored
    raise checks.InputError(
        f"`task_config` differs from the one `model_dir` ({model_dir}) was trained with "
        f"({checks.clipped(described)}); evaluating with it could use data the model was trained on. Use the "
        "training config and data (only the task's evaluation-only keys may differ), or set "
        "`allow_different_config` to evaluate with this one on purpose."
    )


def record_run_config(model_dir: str, config: Mapping[str, Any]) -> None:
    """Writes `model_dir`'s run config once (an existing one is kept: `check_run_config` compared it)."""
    try:
        run_dir.write_json_atomic(os.path.join(model_dir, RUN_CONFIG), dict(config), overwrite=False)
    except tf.errors.AlreadyExistsError:  # A retry (or the run before it) recorded it first.
        pass
