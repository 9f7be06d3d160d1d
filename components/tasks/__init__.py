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
"""

import importlib
import importlib.metadata
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

from tfpipe import checks
from tfpipe.components.tasks.base import Task
from tfpipe.components.tasks.config import config_from_dict
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


def _allowed_modules() -> Optional[List[str]]:
    value = os.environ.get(ALLOWED_MODULES_ENV, "").strip()
    return [m.strip() for m in value.split(",") if m.strip()] or None


def _check_allowed(task: str, module: str) -> None:
    allowed = _allowed_modules()
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
    if not getattr(factory, _MARKER, False):
        raise checks.InputError(
            f"`task` ({checks.shown(task)}) is not declared a tfpipe task factory: decorate it with "
            "`@tfpipe.components.tasks.task_factory`, or register it in the package's "
            f"{ENTRY_POINT_GROUP!r} entry points. It was not called."
        )
    return factory


def build_task(task: str, config: Mapping[str, Any]) -> Task:
    """Builds a task from its name (or reference) and config; call inside the strategy's scope."""
    factory = resolve_factory(task)
    try:
        built = factory(dict(config))
    except checks.InputError:
        raise
    except ValueError as e:  # A task's own config check: input, not a fault (so: one line, no retries).
        raise checks.InputError(f"`task` ({checks.shown(task)}) refused its `task_config`: {e}") from e
    if not isinstance(built, Task):
        raise checks.InputError(
            f"`task` ({checks.shown(task)}): the factory returned {type(built).__name__}, not a "
            "tfpipe.components.tasks.Task."
        )
    return built


__all__ = [
    "ENTRY_POINT_GROUP",
    "Task",
    "TaskFactory",
    "build_task",
    "config_from_dict",
    "install_task_package",
    "registered_tasks",
    "resolve_factory",
    "task_factory",
]
