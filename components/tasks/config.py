"""Task configuration: JSON dicts checked against a dataclass, key by key."""

import dataclasses
import typing
from typing import Any, Mapping, Type, TypeVar, Union

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
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"`task_config` for task {task!r} has unknown key(s) {unknown}; accepted keys: {sorted(fields)}."
        )
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise ValueError(
                f"`task_config[{key!r}]` for task {task!r} must be {_describe(hints[key])}, "
                f"got {type(value).__name__}: {value!r}."
            )
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


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
