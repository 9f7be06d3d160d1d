"""Tasks: a registry of named task factories, and loading `package.module:factory` references.

A task factory takes the task config dictionary and returns a `Task`. It is called
inside the distribution strategy's scope.
"""

import importlib
from typing import Any, Callable, Dict, Mapping

from tfpipe.components.tasks.base import Task
from tfpipe.components.tasks.config import config_from_dict

TaskFactory = Callable[[Dict[str, Any]], Task]

_REGISTRY: Dict[str, str] = {
    "digits": "tfpipe.components.tasks.digits:build",
}


def register_task(name: str, factory_ref: str) -> None:
    """Registers `name` as a short name for the factory `package.module:function`."""
    _REGISTRY[name] = factory_ref


def registered_tasks() -> list:
    """The registered short names."""
    return sorted(_REGISTRY)


def resolve_factory(task: str) -> TaskFactory:
    """Returns the factory for a registered name or a `package.module:factory` reference.

    Raises:
        ValueError: If `task` is neither a registered name nor an importable
            `module:attribute`; the message says what is accepted.
    """
    if not isinstance(task, str) or not task:
        raise ValueError(f"`task` must be a registered name {registered_tasks()} or 'package.module:factory', got {task!r}.")
    ref = _REGISTRY.get(task, task)
    if ":" not in ref:
        raise ValueError(
            f"`task` ({task!r}) is not a registered task {registered_tasks()} and not a "
            "'package.module:factory' reference."
        )
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"`task` ({task!r}): cannot import module {module_name!r}: {e}.") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"`task` ({task!r}): module {module_name!r} has no callable {attr!r}.")
    return factory


def build_task(task: str, config: Mapping[str, Any]) -> Task:
    """Builds a task from its name (or reference) and config; call inside the strategy's scope."""
    built = resolve_factory(task)(dict(config))
    if not isinstance(built, Task):
        raise ValueError(f"`task` ({task!r}): the factory returned {type(built).__name__}, not a tfpipe.components.tasks.Task.")
    return built


__all__ = [
    "Task",
    "TaskFactory",
    "build_task",
    "config_from_dict",
    "register_task",
    "registered_tasks",
    "resolve_factory",
]
