"""The rules for user-facing inputs, one function per kind of value; no TensorFlow, no kfp.

Every layer checks its inputs here before any work starts: the components, the
pipeline builder and the `tfpipe` command (which must never import TensorFlow),
and `controller_core` for the arguments of its own API. Each rule is a function
`check_<kind>(name, value, ...)` that returns the value in its normal form (a
parsed JSON object, a URI without a trailing `/`, None for "not set") or raises
an `InputError` (a `ValueError`) whose message names the input, echoes the value (shortened past
about 200 characters, credentials never echoed) and says what is accepted.
"""

import json
import math
import numbers
import re
import sys
from typing import Any, Dict, Mapping, Optional, Sequence, Union

STRATEGIES = ("default", "mirrored", "tpu", "multi_worker_mirrored")
BEST_MODES = ("higher", "lower")
POLICY_NAMES = ("all", "latest")
# Keras mixed-precision policies a component may run the model in (variables stay float32 in each).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
URI_SCHEMES = ("gs://",)

# Bounds that keep values inside what TensorFlow and JSON represent exactly: steps are int64 on the device and
# written to JSON records (exact as doubles up to 2**53); loop sizes go through int32 tensors.
MAX_STEPS = 2**53
MAX_LOOP_STEPS = 2**31 - 1
MAX_SECONDS = 10**7  # About 115 days.
MAX_NAME_LENGTH = 100
MAX_JSON_DEPTH = 32
MAX_TEXT_LENGTH = 1 << 20

_EVAL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_METRIC_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_MODULE_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# A container image reference, as the OCI distribution grammar spells it: [host[:port]/]path[:tag][@digest], where
# the first component is a host only when it has a '.' or a ':' or is `localhost`.
_HOST = re.compile(r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|[a-zA-Z0-9-]+(?=:))(?::[0-9]+)?")
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
_CREDENTIALS = re.compile(r"^(?:[a-z]+://)?[^/@]*:[^/@]*@")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
# Kubernetes names: DNS-1035 labels (TFJob names), object names (secrets), secret keys; environment variables.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_K8S_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def clipped(text: str, limit: int = 600) -> str:
    """`text`, cut to about `limit` characters (for long composed messages, which `shown` would quote)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class InputError(ValueError):
    """A user-facing input is malformed or names nothing usable: reported in one line, never retried."""


class RefusedError(RuntimeError):
    """A step declined to act, for a reason its message states (e.g. an export whose checkpoint misses its
    thresholds): not a bad input and not a fault. An entry point reports it in one line, exit status 1."""


def shown(value: Any, limit: int = 200) -> str:
    """`repr(value)`, cut to about `limit` characters so a huge input does not flood a message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


_SECRET_KEY = re.compile(r"pass(word)?|secret|token|credential|api.?key|private.?key|auth", re.I)


def redacted(key: str, value: Any) -> Any:
    """`value`, or `"<redacted>"` when `key` looks like the name of a credential (password, token, secret, ...).

    Nested mappings are redacted key by key. For log lines and messages; what is stored is the caller's choice.
    """
    if isinstance(value, Mapping):
        return {k: redacted(str(k), v) for k, v in value.items()}
    if _SECRET_KEY.search(key) and value not in (None, ""):
        return "<redacted>"
    return value


def check_bool(name: str, value: Any) -> bool:
    """Checks a boolean input (True or False, nothing else)."""
    if not isinstance(value, bool):
        raise InputError(f"`{name}` must be true or false, got {shown(value)}.")
    return value


def check_text(name: str, value: Any, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Checks a free-form string input."""
    if not isinstance(value, str) or len(value) > max_length:
        raise InputError(f"`{name}` must be a string of at most {max_length} characters, got {shown(value)}.")
    return value


def check_positive_int(name: str, value: Any, *, allow_zero: bool = False, maximum: int = MAX_STEPS) -> int:
    """Checks an integer input (a count, an interval, a step), 1 (or 0 with `allow_zero`) to `maximum`."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= maximum:
        kind = "a non-negative integer" if allow_zero else "a positive integer"
        raise InputError(f"`{name}` must be {kind} (at most {maximum}), got {shown(value)}.")
    return int(value)


def check_non_negative_int(name: str, value: Any) -> int:
    """Checks a count that may be zero (e.g. retries), at most 1,000,000."""
    return check_positive_int(name, value, allow_zero=True, maximum=10**6)


def check_loop_steps(name: str, value: Any) -> int:
    """Checks a number of steps per loop or between saves: 1 to 2**31 - 1 (it goes through an int32 tensor)."""
    return check_positive_int(name, value, maximum=MAX_LOOP_STEPS)


def check_optional_step(name: str, value: Any) -> Optional[int]:
    """Checks an optional step: a positive integer, or None or 0 for "not set" (KFP parameters cannot be None)."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    return check_positive_int(name, value)


def check_eval_steps(name: str, value: Any) -> int:
    """Checks a number of evaluation steps: -1 (the whole evaluation dataset) or a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
        value == -1 or 1 <= value <= MAX_LOOP_STEPS
    ):
        raise InputError(
            f"`{name}` must be -1 (the whole evaluation dataset) or a positive integer, got {shown(value)}."
        )
    return int(value)


def check_seconds(name: str, value: Any, *, optional: bool = True) -> Optional[float]:
    """Checks a duration: a positive, finite number of seconds (or None when `optional`)."""
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not 0 < value <= MAX_SECONDS):
        accepted = "a positive number of seconds" + (" or None" if optional else "")
        raise InputError(f"`{name}` ({shown(value)}) must be {accepted} (at most {MAX_SECONDS}).")
    return float(value)


def check_positive_seconds(name: str, value: Any) -> float:
    """Checks a duration that must be given: a positive, finite number of seconds."""
    return check_seconds(name, value, optional=False)


def check_optional_seconds(name: str, value: Any) -> Optional[float]:
    """Checks an optional duration: positive seconds, or None or 0 for "no limit"."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    return check_seconds(name, value)


def check_non_negative_number(name: str, value: Any) -> float:
    """Checks a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InputError(f"`{name}` must be a finite number >= 0, got {shown(value)}.")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Checks that `value` is one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"`{name}` must be one of {list(choices)}, got {shown(value)}.")
    return value


_STEP_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_step_range(name: str, value: Any) -> Optional[tuple]:
    """Checks a global-step range `START-STOP` (0 <= START < STOP), or "" for none; returns `(start, stop)` or None."""
    if value == "":
        return None
    match = _STEP_RANGE.fullmatch(value) if isinstance(value, str) else None
    if match is None or not int(match[1]) < int(match[2]) <= MAX_STEPS:
        raise InputError(
            f"`{name}` must be a range of global steps START-STOP such as '100-110' (0 <= START < STOP <= "
            f"{MAX_STEPS}), or empty for none, got {shown(value)}."
        )
    return int(match[1]), int(match[2])


def check_step_range_within(steps: tuple, train_steps: int) -> None:
    """Checks that the step range `profile_steps` ends by `train_steps` (a range past it would trace nothing)."""
    if steps[1] > train_steps:
        raise InputError(
            f"`profile_steps` ({steps[0]}-{steps[1]}) ends after `train_steps` ({train_steps}): training stops "
            f"first. Accepted: a range within 0-{train_steps}."
        )


# Environment variables a step's secrets may never set: they choose the code, libraries, identity, trust or
# cluster role of the step, or are the image's own controls (`TFPIPE_*`).
PROTECTED_ENV = frozenset({
    "PATH", "HOME", "SHELL", "USER", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
})
PROTECTED_ENV_PREFIXES = ("LD_", "PYTHON", "TFPIPE_", "TF_", "AIP_", "KFP_", "CLOUD_ML_", "GCE_METADATA")


def check_secret_env_name(name: str, value: Any) -> str:
    """Checks the environment variable a secret is exposed as: a variable name that is not `PROTECTED_ENV`."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise InputError(f"`{name}` must be an environment variable name, got {shown(value)}.")
    if value.upper() in PROTECTED_ENV or value.upper().startswith(PROTECTED_ENV_PREFIXES):
        raise InputError(
            f"`{name}` ({shown(value)}) would override a variable that chooses the step's code, libraries, identity "
            f"or settings; accepted: any other name (not {sorted(PROTECTED_ENV)}, nor starting with "
            f"{list(PROTECTED_ENV_PREFIXES)})."
        )
    return value


def check_eval_name(name: str, value: Any) -> str:
    """Checks an evaluator name: letters, digits, `_`, `-` or `.`, at most 100 characters (a folder under `eval/`)."""
    if (not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not _EVAL_NAME.fullmatch(value)
            or value in (".", "..")):
        raise InputError(
            f"`{name}` must be a non-empty name of letters, digits, '_', '-' or '.' (at most {MAX_NAME_LENGTH} "
            f"characters), got {shown(value)}."
        )
    return value


def check_metric_name(name: str, value: Any) -> str:
    """Checks a metric name: letters, digits, `_`, `-`, `.`, nested keys as `a/b`."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not _METRIC_NAME.fullmatch(value):
        raise InputError(f"`{name}` must be a metric name such as 'accuracy' or 'head/loss', got {shown(value)}.")
    return value


def check_optional_metric_name(name: str, value: Any) -> Optional[str]:
    """Checks a metric name, or "" (None) for "the task's primary metric"."""
    if value in ("", None):
        return None
    return check_metric_name(name, value)


def check_best_mode(name: str, value: Any) -> Optional[str]:
    """Checks a best mode: `higher` or `lower`, or "" for the task's own."""
    if value in ("", None):
        return None
    return check_choice(name, value, BEST_MODES)


def check_policy(name: str, value: Any) -> Union[str, int]:
    """Checks an evaluation policy: `all`, `latest`, or a positive step stride (an int or digits)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= value <= MAX_STEPS:
        return int(value)
    if isinstance(value, str):
        if value in POLICY_NAMES:
            return value
        if value.isdigit() and len(value) < 17 and 1 <= int(value) <= MAX_STEPS:
            return int(value)
    raise InputError(
        f"`{name}` must be 'all' (every checkpoint), 'latest' (only the newest) or a positive step "
        f"stride such as 1000, got {shown(value)}."
    )


CHECKPOINT_NAMES = ("auto", "latest", "best")


def check_checkpoint_selector(name: str, value: Any) -> Union[str, int]:
    """Checks a checkpoint selector's form: `auto`, `latest`, `best`, a step (an int or digits), or a path."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return check_positive_int(name, value, allow_zero=True)
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        raise InputError(
            f"`{name}` must be {', '.join(repr(n) for n in CHECKPOINT_NAMES)}, a step number, or a checkpoint path, "
            f"got {shown(value)}."
        )
    return value


def check_uri(name: str, value: Any) -> str:
    """Checks a run-directory style URI: `gs://bucket/path`, `/gcs/bucket/path` or a local path.

    Returns:
        The URI without a trailing `/`.
    """
    accepted = "a gs://bucket/path URI, a /gcs/bucket/path mount path, or a local path"
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        raise InputError(f"`{name}` must be {accepted}, got {shown(value)}.")
    if any(c.isspace() and c != " " or ord(c) < 32 for c in value):
        raise InputError(f"`{name}` ({shown(value)}) holds control characters; it must be {accepted}.")
    if value.startswith("gs:/") and not value.startswith("gs://"):
        raise InputError(f"`{name}` ({shown(value)}) is not a gs:// URI (one '/' is missing); it must be {accepted}.")
    if "://" in value and not value.startswith(URI_SCHEMES):
        raise InputError(f"`{name}` ({shown(value)}) has an unsupported scheme; it must be {accepted}.")
    if value.startswith("gs://"):
        bucket = value[len("gs://"):].split("/", 1)[0]
        if not bucket:
            raise InputError(f"`{name}` ({shown(value)}) names no bucket; it must be {accepted}.")
        if not _BUCKET.fullmatch(bucket):
            raise InputError(
                f"`{name}` ({shown(value)}): {shown(bucket)} is not a Cloud Storage bucket name (lowercase letters, "
                f"digits, '-', '_', '.'; 3 to 222 characters); it must be {accepted}."
            )
    stripped = value.rstrip("/")
    if not stripped or (not stripped.startswith("gs://") and stripped.strip("/.") == ""):
        raise InputError(f"`{name}` ({shown(value)}) is a filesystem root; it must be a folder of its own: {accepted}.")
    return stripped


def check_optional_uri(name: str, value: Any) -> Optional[str]:
    """Checks an optional URI: "" or None for "not set", else as `check_uri`."""
    if value in ("", None):
        return None
    return check_uri(name, value)


def check_package_uri(name: str, value: Any) -> Optional[str]:
    """Checks a Python package to install: "" for none, else a wheel or sdist on gs:// or a local path."""
    if value in ("", None):
        return None
    uri = check_uri(name, value)
    if not uri.endswith((".whl", ".tar.gz", ".zip")):
        raise InputError(
            f"`{name}` ({shown(value)}) must be a wheel (.whl) or a source distribution (.tar.gz, .zip) on gs:// "
            "or a local path."
        )
    return uri


def check_task(name: str, value: Any) -> str:
    """Checks the form of a task reference: a registered name, or `package.module:factory`.

    Whether it names a task is checked when it is resolved (`tfpipe.components.tasks`).
    """
    if not isinstance(value, str) or len(value) > 200 or not (
        _TASK_NAME.fullmatch(value) or _MODULE_ATTR.fullmatch(value)
    ):
        raise InputError(
            f"`{name}` must be a registered task name (such as 'digits') or a 'package.module:factory' reference, "
            f"got {shown(value)}."
        )
    module = value.partition(":")[0].split(".")[0]
    if ":" in value and module in sys.stdlib_module_names:
        raise InputError(
            f"`{name}` ({shown(value)}) is not declared a tfpipe task factory: {module!r} is a module of Python's "
            "standard library, which holds none. Nothing was imported."
        )
    return value


def check_image(name: str, value: Any) -> str:
    """Checks a container image reference such as `us-docker.pkg.dev/p/repo/tfpipe:0.1.0` (tag or digest optional).

    Credentials never belong in a reference (they would be written into compiled
    pipelines): `user:password@host/...` is refused without echoing the password.
    """
    accepted = "a container image reference such as 'us-docker.pkg.dev/my-project/ml/tfpipe:0.1.0'"
    if isinstance(value, str) and _CREDENTIALS.match(value):
        redacted = _CREDENTIALS.sub("<credentials>@", value)
        raise InputError(
            f"`{name}` ({shown(redacted)}) holds credentials; they would be written into the compiled pipeline. "
            f"It must be {accepted}; give the cluster pull access instead (an imagePullSecret on GKE, the service "
            "account's Artifact Registry reader role on Vertex)."
        )
    host, _, rest = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not (rest and _HOST.fullmatch(host)):
        rest = value
    if not isinstance(value, str) or len(value) > 4096 or not _REPOSITORY.fullmatch(rest):
        raise InputError(f"`{name}` must be {accepted}, got {shown(value)}.")
    return value


def check_int_at_least(name: str, value: Any, low: int) -> int:
    """Checks an integer input that must be at least `low` (e.g. a number of replicas)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(f"`{name}` must be an integer >= {low}, got {shown(value)}.")
    return int(value)


def check_non_empty_text(name: str, value: Any) -> str:
    """Checks a string input that must hold more than white space (a namespace, an image the caller resolved)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT_LENGTH:
        raise InputError(f"`{name}` must be a non-empty string, got {shown(value)}.")
    return value


def check_dns_label(name: str, value: Any, *, max_length: int = 63) -> str:
    """Checks a Kubernetes object name of the DNS-1035 label kind (a TFJob name): at most `max_length` characters."""
    if not isinstance(value, str) or len(value) > max_length or not _DNS_LABEL.fullmatch(value):
        raise InputError(
            f"`{name}` must be lower-case letters, digits and '-', start with a letter, end with a letter or "
            f"digit, and be at most {max_length} characters long, got {shown(value)}."
        )
    return value


def check_secret_env(name: str, value: Any) -> Dict[str, Dict[str, str]]:
    """Checks `{secret: {key: ENV}}`: Kubernetes secrets to expose as environment variables (names only).

    Secret names are Kubernetes names, keys Kubernetes secret keys, and each ENV an environment variable name.
    None or an empty mapping is `{}`; JSON text is parsed first.
    """
    if isinstance(value, str):
        value = check_json_object(name, value)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"`{name}` must map secret names to {{key: ENV}} mappings, got {shown(value)}.")
    for secret, keys in value.items():
        if not isinstance(secret, str) or not _K8S_NAME.fullmatch(secret):
            raise InputError(
                f"`{name}` secret name {shown(secret)} is not a Kubernetes name (lowercase, digits, '-', '.')."
            )
        if not isinstance(keys, Mapping) or not keys:
            raise InputError(f"`{name}[{secret!r}]` must map secret keys to environment variables, got {shown(keys)}.")
        for key, env in keys.items():
            if not isinstance(key, str) or not _K8S_SECRET_KEY.fullmatch(key) or key in (".", ".."):
                raise InputError(
                    f"`{name}[{secret!r}]` key {shown(key)} is not a Kubernetes secret key (letters, digits, '-', "
                    "'_', '.')."
                )
            check_secret_env_name(f"{name}[{secret!r}][{key!r}]", env)
    return {secret: dict(keys) for secret, keys in value.items()}


def _depth(value: Any, limit: int) -> int:
    """The nesting depth of a JSON value, counted up to `limit` + 1 without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_json_object(name: str, value: Union[str, Mapping[str, Any], None]) -> Dict[str, Any]:
    """Checks an input given as a JSON object (text, or already a mapping); None or empty text is `{}`.

    Objects nested deeper than 32 levels are refused (they would exhaust Python's recursion limit).
    """
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        parsed: Any = dict(value)
    elif not isinstance(value, str):
        raise InputError(f"`{name}` must be a JSON object, got {type(value).__name__}: {shown(value)}.")
    elif len(value) > MAX_TEXT_LENGTH:
        raise InputError(f"`{name}` is {len(value)} characters long; at most {MAX_TEXT_LENGTH} are accepted.")
    else:
        # Bracket depth is bounded before parsing: json.loads recurses once per level.
        if _bracket_depth(value) > MAX_JSON_DEPTH:
            raise InputError(f"`{name}` nests deeper than {MAX_JSON_DEPTH} levels: {shown(value)}.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(f"`{name}` is not valid JSON ({e.msg} at position {e.pos}): {shown(value)}.") from None
    if not isinstance(parsed, dict):
        raise InputError(f"`{name}` must be a JSON object, got {type(parsed).__name__}: {shown(value)}.")
    if _depth(parsed, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InputError(f"`{name}` nests deeper than {MAX_JSON_DEPTH} levels: {shown(value)}.")
    return parsed


def _bracket_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


# What is found before any work and reported like a bad input (one line, exit status 2; a step never records it as
# a failure to skip on retry): a bad input, or a missing optional dependency.
INPUT_ERRORS = (InputError, MissingExtraError)
# How a step's one-line refusal (`RefusedError`) begins after its name: `export: refused: Not exporting ...`.
REFUSED_PREFIX = "refused: "


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
