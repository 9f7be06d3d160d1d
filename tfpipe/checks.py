"""The rules for user-facing inputs, one function per kind of value; no TensorFlow, no kfp.

The components check their inputs here before any work starts, and so do the
`tfpipe` command and the pipeline builder, which must never import TensorFlow.
Every error is a `ValueError` whose message names the input, echoes the value
(shortened when long) and says what is accepted.
"""

import json
import numbers
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Union

STRATEGIES = ("default", "mirrored", "tpu", "multi_worker_mirrored")
BEST_MODES = ("higher", "lower")
POLICY_NAMES = ("all", "latest")
URI_SCHEMES = ("gs://",)
_EVAL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A container image reference, as the OCI distribution grammar spells it: [host[:port]/]path[:tag][@digest], where
# the first component is a host only when it has a '.' or a ':' or is `localhost`.
_HOST = re.compile(r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9-]+(?=:))(?::[0-9]+)?")
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
_CREDENTIALS = re.compile(r"^(?:[a-z]+://)?[^/@]*:[^/@]*@")


def shown(value: Any, limit: int = 200) -> str:
    """`repr(value)`, cut to about `limit` characters so a huge input does not flood a message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def check_uri(name: str, value: Any) -> str:
    """Checks a run-directory style URI: `gs://bucket/path`, `/gcs/bucket/path` or a local path.

    Returns:
        The URI without a trailing `/`.

    Raises:
        ValueError: Naming the input, the value and what is accepted.
    """
    accepted = "a gs://bucket/path URI, a /gcs/bucket/path mount path, or a local path"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{name}` must be {accepted}, got {shown(value)}.")
    if "://" in value and not value.startswith(URI_SCHEMES):
        raise ValueError(f"`{name}` ({shown(value)}) has an unsupported scheme; it must be {accepted}.")
    if value.startswith("gs://") and len(value.rstrip("/")) <= len("gs://"):
        raise ValueError(f"`{name}` ({shown(value)}) names no bucket; it must be {accepted}.")
    return value.rstrip("/") if value != "/" else value


def check_image(value: Any, name: str = "image") -> str:
    """Checks a container image reference such as `us-docker.pkg.dev/p/repo/tfpipe:0.1.0` (tag or digest optional).

    Credentials never belong in a reference (they would be written into compiled
    pipelines): `user:password@host/...` is refused without echoing the password.

    Raises:
        ValueError: Naming the input, the value and what is accepted.
    """
    accepted = "a container image reference such as 'us-docker.pkg.dev/my-project/ml/tfpipe:0.1.0'"
    if isinstance(value, str) and _CREDENTIALS.match(value):
        redacted = _CREDENTIALS.sub("<credentials>@", value)
        raise ValueError(
            f"`{name}` ({shown(redacted)}) holds credentials; they would be written into the compiled pipeline. "
            f"It must be {accepted}; give the cluster pull access instead (an imagePullSecret on GKE, the service "
            "account's Artifact Registry reader role on Vertex)."
        )
    host, _, rest = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not (rest and _HOST.fullmatch(host)):
        rest = value
    if not isinstance(value, str) or len(value) > 4096 or not _REPOSITORY.fullmatch(rest):
        raise ValueError(f"`{name}` must be {accepted}, got {shown(value)}.")
    return value


def check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """Checks an integer input (a count, an interval, a step).

    Raises:
        ValueError: Naming the input, the value and what is accepted.
    """
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = "a non-negative integer" if allow_zero else "a positive integer"
        raise ValueError(f"`{name}` must be {kind}, got {shown(value)}.")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Checks that `value` is one of `choices`.

    Raises:
        ValueError: Naming the input, the value and the choices.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {shown(value)}.")
    return value


def check_eval_name(value: Any, name: str = "eval_name") -> str:
    """Checks an evaluator name: a non-empty name of letters, digits, `_`, `-` or `.` (a folder under `eval/`).

    Raises:
        ValueError: Naming the input, the value and what is accepted.
    """
    if not isinstance(value, str) or not _EVAL_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"`{name}` must be a non-empty name of letters, digits, '_', '-' or '.', got {shown(value)}.")
    return value


def check_eval_steps(value: Any) -> int:
    """Checks `eval_steps`: -1 (the whole evaluation dataset) or a positive number of steps."""
    if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value >= 1):
        raise ValueError(
            f"`eval_steps` must be -1 (the whole evaluation dataset) or a positive integer, got {shown(value)}."
        )
    return value


def check_seconds(name: str, value: Any, *, optional: bool = True) -> Optional[float]:
    """Checks a duration: a positive number of seconds (or None when `optional`).

    Raises:
        ValueError: Naming the input, the value and what is accepted.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        accepted = "a positive number of seconds or None" if optional else "a positive number of seconds"
        raise ValueError(f"`{name}` ({shown(value)}) must be {accepted}.")
    return value


def parse_policy(policy: Any) -> Union[str, int]:
    """Checks an evaluation policy: `all`, `latest`, or a positive step stride (int or digits).

    Raises:
        ValueError: Naming the value and what is accepted.
    """
    if isinstance(policy, int) and not isinstance(policy, bool) and policy >= 1:
        return policy
    if isinstance(policy, str):
        if policy in POLICY_NAMES:
            return policy
        if policy.isdigit() and int(policy) >= 1:
            return int(policy)
    raise ValueError(
        f"`policy` must be 'all' (every checkpoint), 'latest' (only the newest) or a positive step "
        f"stride such as 1000, got {shown(policy)}."
    )


def zero_means_unset(value: Optional[Union[int, float]]) -> Optional[Union[int, float]]:
    """KFP parameters cannot be None-valued in every backend: 0 stands for "not set"."""
    if value is None or value == 0:
        return None
    return value


def parse_json_object(text: Union[str, Mapping[str, Any], None], *, input_name: str) -> Dict[str, Any]:
    """Parses an input given as a JSON object (text, or already a mapping); None or empty text is `{}`.

    Raises:
        ValueError: If the text is not JSON, or not an object.
    """
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    if not isinstance(text, str):
        raise ValueError(f"`{input_name}` must be a JSON object, got {type(text).__name__}: {shown(text)}.")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"`{input_name}` is not valid JSON ({e.msg} at position {e.pos}): {shown(text)}.") from None
    if not isinstance(value, dict):
        raise ValueError(f"`{input_name}` must be a JSON object, got {type(value).__name__}: {shown(text)}.")
    return value


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def import_extra(module: str, *, extra: str, needed_for: str) -> Any:
    """Imports an optional dependency, or raises `MissingExtraError` saying which extra to install.

    Args:
        module: The module to import, e.g. `google_cloud_pipeline_components.v1.custom_job`.
        extra: The tfpipe extra that installs it, e.g. `vertex-custom-job`.
        needed_for: What needs it, for the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{needed_for} needs {module.split('.')[0]}, which is not installed ({error.msg}); "
            f"install it with `pip install 'tfpipe[{extra}]'`."
        ) from None
