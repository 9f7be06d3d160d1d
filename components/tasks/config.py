"""Task configuration: JSON dicts checked against a dataclass, key by key.

The task config is stored in the run directory (`run_config.json`) and shown in
KFP's and Vertex's run pages, so it must not hold secrets. A string field can take
its value from the step's environment instead: `{"api_token": {"from_env":
"DATA_TOKEN"}}` stores and shows only the variable's name, and `config_from_dict`
reads the value when the task is built (on GKE, `tfpipe compile --secret
NAME:KEY=DATA_TOKEN` puts a Kubernetes secret there; on Vertex, use the run's
service account or Secret Manager).

The resolved value is used only to build the task: `stored_view` turns the task's
effective config back into what may be stored (every value that came from the
environment becomes `{"from_env": NAME}` again), so `run_config.json`, eval records,
`best.json`, export metadata and reports hold the name only, and a later step compares
names, never values (a rotated secret does not refuse the run). `hidden` replaces
every resolved value in a message or log line with `<from_env NAME>`, whatever the
key is called; keys that look like credentials are redacted in messages too.
"""

import dataclasses
import os
import typing
from typing import Any, Dict, Mapping, Type, TypeVar, Union

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
    from_env = {key: value[FROM_ENV] for key, value in values.items() if is_from_env(value)}
    values = {key: _from_env(key, value, task) for key, value in values.items()}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise checks.InputError(
            f"`task_config` for task {task!r} has unknown key(s) {checks.shown(unknown)}; accepted keys: {sorted(fields)}."
        )
    for key, value in values.items():
        if not _matches(value, hints[key]):
            got = f"<from_env {from_env[key]}>" if key in from_env else checks.shown(checks.redacted(key, value))
            raise checks.InputError(
                f"`task_config[{key!r}]` for task {task!r} must be {_describe(hints[key])}, "
                f"got {type(value).__name__}: {got}."
            )
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()  # `tasks.build_task` hides values from the environment in what it raises.
    return config


FROM_ENV = "from_env"

# Every value this process read for a `from_env` reference, and the variable it came from.
_RESOLVED: Dict[str, str] = {}


def is_from_env(value: Any) -> bool:
    """Whether `value` is a `{"from_env": NAME}` reference."""
    return isinstance(value, Mapping) and set(value) == {FROM_ENV}


def _from_env(key: str, value: Any, task: str) -> Any:
    """The value of `{"from_env": "NAME"}`: the environment variable NAME (which must be set)."""
    if not is_from_env(value):
        return value
    name = value[FROM_ENV]
    if not isinstance(name, str) or name not in os.environ:
        raise checks.InputError(
            f"`task_config[{key!r}]` for task {task!r} takes its value from the environment variable "
            f"{checks.shown(name)}, which is not set in this step."
        )
    resolved = os.environ[name]
    if resolved:
        _RESOLVED[resolved] = name
    return resolved


def resolve_from_env(values: Mapping[str, Any], *, task: str) -> Dict[str, Any]:
    """`values` with every top-level `{"from_env": NAME}` replaced by the variable's value (for factories that
    do not use `config_from_dict`)."""
    return {key: _from_env(key, value, task) for key, value in values.items()}


def stored_view(value: Any) -> Any:
    """`value` (a config, a record) as it may be stored or shown: every string that is a value read from the
    environment becomes `{"from_env": NAME}` again, and one that contains such a value shows `<from_env NAME>`
    in its place."""
    if isinstance(value, Mapping):
        return {k: stored_view(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored_view(v) for v in value]
    if isinstance(value, str):
        if value in _RESOLVED:
            return {FROM_ENV: _RESOLVED[value]}
        return hidden(value)
    return value


def hidden(text: str) -> str:
    """`text` with every value read from the environment for a `from_env` reference replaced by
    `<from_env NAME>` (longest first, so a value inside another is not half shown)."""
    for resolved in sorted(_RESOLVED, key=len, reverse=True):
        if resolved in text:
            text = text.replace(resolved, f"<from_env {_RESOLVED[resolved]}>")
    return text


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
