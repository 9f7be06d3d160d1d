"""Tasks: the built-in ones, tasks that installed packages declare, and declared `module:factory` references.

A task factory takes the task config dictionary and returns a `Task`; it is called
inside the distribution strategy's scope. Tasks are opt-in code: `--task` (the
`task` input) accepts only

* a registered name: a built-in task (`digits`; `model_garden`, a Model Garden
  experiment, with the `model-garden` extra), or a name an installed package
  declares in the `tfpipe.tasks` entry-point group
  (`[project.entry-points."tfpipe.tasks"] mytask = "mypkg.tasks:build"`); or
* `package.module:factory` where `factory` is declared a task factory with the
  `@task_factory` decorator.

Anything else is refused before the factory is called; an image can also refuse
modules before they are imported with an allow-list of module prefixes in
`$TFPIPE_TASK_MODULES` (e.g. `mypkg,tfpipe`). Whoever sets a run's `task` (and
`task_package`) chooses the code that runs as the step's service account: treat
those inputs like the image reference itself.

A factory whose signature has a `data` keyword receives the step's data inputs
(`train_data`, `eval_data`, `test_data`) as `data=DataInputs(...)`
(`tfpipe.components.common.data`); `tfpipe.components.tasks.readers` reads them.
"""

import importlib
import importlib.metadata
import inspect
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

from tfpipe import checks
from tfpipe.components.common.data import DataInputs, DataRef
from tfpipe.controller_core import keras3
from tfpipe.components.tasks.base import Task
from tfpipe.components.tasks.config import config_from_dict
from tfpipe.components.tasks.config import hidden
from tfpipe.components.tasks.packages import TaskPackage
from tfpipe.components.tasks.packages import install_task_package

TaskFactory = Callable[[Dict[str, Any]], Task]

ENTRY_POINT_GROUP = "tfpipe.tasks"
ALLOWED_MODULES_ENV = "TFPIPE_TASK_MODULES"
_BUILTIN: Dict[str, str] = {
    "digits": "tfpipe.components.tasks.digits:build",
    "model_garden": "tfpipe.components.tasks.model_garden:build",
}
_MARKER = "__tfpipe_task_factory__"


def task_factory(factory: TaskFactory) -> TaskFactory:
    """Declares `factory` a tfpipe task factory, so that `--task=package.module:factory` may call it."""
    setattr(factory, _MARKER, True)
    return factory


def registered_tasks() -> Dict[str, str]:
    """Registered task names and their `module:factory`: the built-in ones and the `tfpipe.tasks` entry points."""
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **_BUILTIN}


def allowed_modules() -> Optional[List[str]]:
    """The module prefixes `$TFPIPE_TASK_MODULES` allows, or None when it is not set (every module)."""
    value = os.environ.get(ALLOWED_MODULES_ENV, "").strip()
    return [m.strip() for m in value.split(",") if m.strip()] or None


def _check_allowed(task: str, module: str) -> None:
    allowed = allowed_modules()
    if allowed is not None and not any(module == m or module.startswith(f"{m}.") for m in allowed):
        raise checks.InputError(
            f"`task` ({checks.shown(task)}): module {module!r} is not among the task modules this image accepts "
            f"(${ALLOWED_MODULES_ENV}={','.join(allowed)}); nothing was imported."
        )


def resolve_factory(task: Any) -> TaskFactory:
    """Returns the factory of a registered task name or of a declared `package.module:factory`.

    Raises:
        checks.InputError: If `task` is malformed, unknown, not allowed here, not importable, or not declared a
            task factory; the message says what is accepted. Nothing is called.
    """
    checks.check_task("task", task)
    registered = registered_tasks()
    if task in registered:
        module_name, _, attr = registered[task].partition(":")
        _check_allowed(task, module_name)
        return getattr(importlib.import_module(module_name), attr)
    if ":" not in task:
        raise checks.InputError(
            f"`task` ({checks.shown(task)}) is not a registered task {sorted(registered)} and not a "
            "'package.module:factory' reference."
        )
    module_name, _, attr = task.partition(":")
    _check_allowed(task, module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise checks.InputError(f"`task` ({checks.shown(task)}): cannot import module {module_name!r}: {e}.") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise checks.InputError(f"`task` ({checks.shown(task)}): module {module_name!r} has no callable {attr!r}.")
    if inspect.getattr_static(factory, _MARKER, None) is not True:  # Set by `task_factory`, not computed on the fly.
        raise checks.InputError(
            f"`task` ({checks.shown(task)}) is not declared a tfpipe task factory: decorate it with "
            "`@tfpipe.components.tasks.task_factory`, or register it in the package's "
            f"{ENTRY_POINT_GROUP!r} entry points. It was not called."
        )
    return factory


def _data_keyword(factory: TaskFactory, task: str, data: Optional[DataInputs]) -> Dict[str, DataInputs]:
    """`{"data": data}` for a factory that takes a `data` keyword (or `**kwargs`); `{}` for one that does not.

    Raises:
        checks.InputError: If data inputs were given for a task whose factory cannot take them (it would train on
            its own data, not on the data given).
    """
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # A builtin or C callable: no keywords to inspect.
        parameters = []
    if any(p.name == "data" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return {"data": data or DataInputs()}
    if data:
        raise checks.InputError(
            f"`task` ({checks.shown(task)}) takes no data inputs, but {sorted(data.given())} were given: its factory "
            "has no `data` keyword (`def build(config, *, data: DataInputs)`), so it would not read them."
        )
    return {}


def build_task(task: str, config: Mapping[str, Any], data: Optional[DataInputs] = None) -> Task:
    """Builds a task from its name (or reference), config and data inputs; call inside the strategy's scope."""
    factory = resolve_factory(task)
    data_keyword = _data_keyword(factory, task, data)
    try:
        built = factory(dict(config), **data_keyword)
    except checks.InputError as e:  # Values from the environment (`from_env`) never appear in a message.
        raise checks.InputError(hidden(str(e))) from None
    except ValueError as e:  # A task's own config check: input, not a fault (so: one line, no retries).
        raise checks.InputError(f"`task` ({checks.shown(task)}) refused its `task_config`: {hidden(str(e))}") from None
    if not isinstance(built, Task):
        raise checks.InputError(
            f"`task` ({checks.shown(task)}): the factory returned {type(built).__name__}, not a "
            "tfpipe.components.tasks.Task."
        )
    _check_no_keras3(task, built)
    return built


def _check_no_keras3(task: str, built: Task) -> None:
    """Refuses a task whose model, optimizer, step counter, runners' state or loss is a Keras 3 object.

    Raises:
        checks.InputError: Naming the first such object and the fix (`tf_keras`, or `TF_USE_LEGACY_KERAS=1`).
    """
    parts = [("model", built.model), ("optimizer", built.optimizer), ("global_step", built.global_step),
             ("loss", built.loss)]
    for runner_name in ("trainer", "evaluator"):
        runner = getattr(built, runner_name)
        parts += [(f"{runner_name}.{attr}", getattr(runner, attr, None))
                  for attr in ("global_step", "model", "optimizer")] if runner is not None else []
    parts += [(f"checkpoint_items[{key!r}]", value) for key, value in built.checkpoint_items.items()]
    found = keras3.first_keras3(parts)
    if found is not None:
        raise checks.InputError(f"`task` ({checks.shown(task)}): {keras3.describe(*found)}")


__all__ = [
    "DataInputs",
    "DataRef",
    "ENTRY_POINT_GROUP",
    "Task",
    "TaskFactory",
    "TaskPackage",
    "build_task",
    "config_from_dict",
    "install_task_package",
    "registered_tasks",
    "resolve_factory",
    "task_factory",
]
