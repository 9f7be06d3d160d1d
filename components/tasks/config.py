"""Task configuration: JSON dicts checked against a dataclass, key by key.

The task config is stored in the run directory (`run_config.json`) and shown in
KFP's and Vertex's run pages, so it must not hold secrets. A string field can take
its value from the step's environment instead: `{"api_token": {"from_env":
"DATA_TOKEN"}}` stores and shows only the variable's name, and `config_from_dict`
reads the value when the task is built (on GKE, `tfpipe compile --secret
NAME:KEY=DATA_TOKEN` puts a Kubernetes secret there; on Vertex, use the run's
service account or Secret Manager). Keys that look like credentials are redacted
in tfpipe's own messages.
"""

import dataclasses
import os
import typing
from typing import Any, Mapping, Type, TypeVar, Union

from tfpipe import checks

C = TypeVar("C")


def config_from_dict(cls: Type[C], values: Mapping[str, Any], *, task: str) -> C:
    """Builds the config dataclass `cls` from `values`, checking every key and type.

    Integers are accepted where floats are expected; nothing else is coerced.

    Args:
        cls: A dataclass whose fields have defaults.
        values: The user's config.
        task: The task name, for error messages.

    Returns:
        An instance of `cls`.

    Raises:
        ValueError: For an unknown key, or a value of the wrong type; the
            message names the key, the value and what is accepted.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {key: _from_env(key, value, task) for key, value in values.items()}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise checks.InputError(
            f"`task_config` for task {task!r} has unknown key(s) {checks.shown(unknown)}; accepted keys: {sorted(fields)}."
        )
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise checks.InputError(
                f"`task_config[{key!r}]` for task {task!r} must be {_describe(hints[key])}, "
                f"got {type(value).__name__}: {checks.shown(checks.redacted(key, value))}."
            )
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


FROM_ENV = "from_env"


def _from_env(key: str, value: Any, task: str) -> Any:
    """The value of `{"from_env": "NAME"}`: the environment variable NAME (which must be set)."""
    if not (isinstance(value, Mapping) and set(value) == {FROM_ENV}):
        return value
    name = value[FROM_ENV]
    if not isinstance(name, str) or name not in os.environ:
        raise checks.InputError(
            f"`task_config[{key!r}]` for task {task!r} takes its value from the environment variable "
            f"{checks.shown(name)}, which is not set in this step."
        )
    return os.environ[name]


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Union:
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(hint, str(hint))
