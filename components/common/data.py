"""Data inputs: how a step's `train_data`, `eval_data` and `test_data` reach its task.

A user's DAG hands data to training as KFP `Dataset` artifacts; a shell (or a
replica of a multi-worker job) gives the same inputs as flags. Either way the task
receives them through one channel, a `DataInputs` of `DataRef`s, as the keyword
`data` of its factory::

    @task_factory
    def build(config: dict, *, data: DataInputs) -> Task:
        files = readers.list_files(data.train, "*.tfrecord") if data.train else default_files

| where the data comes from | what the task's `DataRef` holds |
|---|---|
| a KFP `Input[Dataset]` (train/evaluate/continuous_eval/export/check_inputs) | `uri`: the artifact's `gs://` URI, else its local `path` (kfp.local, a launcher's local copy); `metadata`: the artifact's metadata |
| `--train_data=URI` or `--train_data='{"uri": URI, "metadata": {...}}'` (entry points) | that URI and metadata |
| nothing given, on Vertex AI: `$AIP_TRAINING_DATA_URI`, `$AIP_VALIDATION_DATA_URI`, `$AIP_TEST_DATA_URI` | that URI, `metadata={"format": $AIP_DATA_FORMAT}` |

A URI is a folder, one file, or a glob pattern (Vertex's `gs://b/d/training-*`), on
`gs://`, `/gcs/` or a local disk; `tfpipe.components.tasks.readers` lists and reads
it. What a run was trained on is recorded as a content fingerprint, not as the URI
(`tfpipe.components.common.data_identity`). No TensorFlow and no kfp here.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional

from tfpipe import checks

# The data inputs, in order, and the Vertex AI variable each falls back to when it is not given.
NAMES = ("train_data", "eval_data", "test_data")
VERTEX_VARIABLES = {
    "train_data": "AIP_TRAINING_DATA_URI",
    "eval_data": "AIP_VALIDATION_DATA_URI",
    "test_data": "AIP_TEST_DATA_URI",
}
VERTEX_FORMAT = "AIP_DATA_FORMAT"
_ACCEPTED = ('a URI (gs://bucket/path, /gcs/bucket/path or a local path; a folder, a file or a glob pattern), or '
             'a JSON object {"uri": URI, "metadata": {...}}')


@dataclasses.dataclass(frozen=True)
class DataRef:
    """One data input: where it is, and what its producer said about it.

    Attributes:
        uri: A folder, a file or a glob pattern that `tf.io.gfile` reads: `gs://...`, `/gcs/...` or a local path.
        metadata: The KFP artifact's metadata (e.g. `{"format": "tfrecord"}`); `{}` when none was given.
    """

    uri: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def format(self) -> Optional[str]:
        """`metadata["format"]` when the producer (or `$AIP_DATA_FORMAT`) named one, else None."""
        value = self.metadata.get("format")
        return str(value) if value else None

    def to_json(self) -> str:
        """The entry-point flag value that gives this input (`--train_data=<this>`)."""
        return json.dumps({"uri": self.uri, "metadata": dict(self.metadata)}, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class DataInputs:
    """A step's data inputs, as a task factory receives them (its `data` keyword).

    Attributes:
        train: The training data (`train_data`), or None.
        eval: The validation data (`eval_data`), or None.
        test: Held-out test data (`test_data`; evaluate and export only), or None.
    """

    train: Optional[DataRef] = None
    eval: Optional[DataRef] = None
    test: Optional[DataRef] = None

    @classmethod
    def from_inputs(cls, args: Any) -> "DataInputs":
        """The data inputs of a step's checked inputs (`train_data`, `eval_data`, `test_data` where declared)."""
        return cls(**{name.replace("_data", ""): getattr(args, name, None) for name in NAMES})

    def given(self) -> Dict[str, DataRef]:
        """The inputs that were given, by input name (`train_data`, ...)."""
        return {f"{f.name}_data": getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


def check_data_ref(name: str, value: Any) -> Optional[DataRef]:
    """Checks a data input: "" or None (not given), a URI, a `{"uri", "metadata"}` JSON object, a `DataRef`, or a
    KFP input artifact (`from_artifact`).

    Returns:
        The `DataRef` (URI without a trailing `/`), or None.

    Raises:
        checks.InputError: Naming the input, echoing the value and saying what is accepted.
    """
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if not isinstance(value, (str, DataRef)) and hasattr(value, "uri") and hasattr(value, "metadata"):
        return check_data_ref(name, from_artifact(value))  # A KFP input artifact.
    if isinstance(value, DataRef):
        uri, metadata = value.uri, value.metadata
    elif isinstance(value, str) and value.lstrip().startswith("{"):
        parsed = checks.check_json_object(name, value)
        unknown = sorted(set(parsed) - {"uri", "metadata"})
        if unknown or "uri" not in parsed:
            raise checks.InputError(f"`{name}` ({checks.shown(value)}) must be {_ACCEPTED}; "
                                    + (f"unknown key(s) {unknown}." if unknown else "it has no 'uri'."))
        uri, metadata = parsed["uri"], parsed.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise checks.InputError(f"`{name}`: 'metadata' must be a JSON object, got {checks.shown(metadata)}.")
    elif isinstance(value, str):
        uri, metadata = value, {}
    else:
        raise checks.InputError(f"`{name}` must be {_ACCEPTED}, got {type(value).__name__}: {checks.shown(value)}.")
    return DataRef(uri=checks.check_uri(name, uri), metadata=dict(metadata))


def from_artifact(artifact: Any) -> Optional[DataRef]:
    """The `DataRef` of a KFP input artifact (None when the optional input was not connected).

    A `gs://` URI is read directly (TensorFlow streams it; on Vertex it is the same object as `.path`'s
    `/gcs/` mount); any other URI (a local pipeline root, a store TensorFlow cannot read) is read at the local
    `.path` the runner gives (kfp.local's path, DockerRunner's mount, a launcher's local copy).
    """
    if artifact is None or not getattr(artifact, "uri", ""):
        return None
    uri = artifact.uri if artifact.uri.startswith("gs://") else (getattr(artifact, "path", None) or artifact.uri)
    return DataRef(uri=uri, metadata=dict(artifact.metadata or {}))


def vertex_defaults(values: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """`values` with each data input that is declared but not given set from Vertex's `AIP_*_DATA_URI`.

    Args:
        values: A step's inputs; data inputs it lacks are not declared by the step and stay out.
        environ: The environment (default: `os.environ`).

    Returns:
        A copy of `values` (each default announced on stdout).
    """
    environ = os.environ if environ is None else environ
    result = dict(values)
    for name, variable in VERTEX_VARIABLES.items():
        if name not in result or not (result[name] is None or result[name] == ""):
            continue
        uri = environ.get(variable, "").strip()
        if uri:
            data_format = environ.get(VERTEX_FORMAT, "").strip()
            print(f"vertex | `{name}` is not given: using ${variable} ({uri})", flush=True)
            result[name] = DataRef(uri=uri, metadata={"format": data_format} if data_format else {})
    return result
