"""Readers for data inputs in common formats, so that a task needs no input code of its own.

Each reader takes a `DataRef` (a task factory's `data.train`, `data.eval`,
`data.test`, see `tfpipe.components.common.data`) or a URI — a folder, a glob pattern or
one file on `gs://`, `/gcs/` or a local disk — and returns a `tf.data.Dataset` of
single examples, streamed from the files (never loaded whole into memory):

| format (`DataRef.format`) | reader | elements |
|---|---|---|
| TFRecord files of `tf.train.Example` (`tfrecord`, Vertex's `tf-record`) | `tfrecord_dataset(ref, feature_spec)` | dicts parsed with the feature spec |
| a `tf.data.Dataset.save` folder (`tf-dataset`) | `saved_dataset(ref)` | the saved elements |
| CSV files with a header line (`csv`) | `csv_dataset(ref, column_defaults)` | dicts by column name |
| JSON Lines files (`jsonl`) | `jsonl_dataset(ref, output_signature)` | dicts of the signature's keys |

`read(ref, ...)` picks the reader from the producer's `format` metadata. Given the
`input_context` a task's dataset function receives, each reader returns this
input pipeline's shard (multi-worker strategies): whole files when there are at
least as many files as input pipelines, else every n-th example. Batching,
shuffling and repeating stay with the task.

Write TFRecords deterministically (`example.SerializeToString(deterministic=True)`):
the run records the data's content fingerprint, and the same examples serialized in
another map order are other bytes (`tfpipe.components.common.data_identity`).
"""

import fnmatch
import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import tensorflow as tf

from tfpipe import checks
from tfpipe.components.common.data import DataRef

Source = Union[DataRef, str]
_WILDCARDS = "*?["
FORMATS = {"tfrecord": "tfrecord", "tf-record": "tfrecord", "tfrecords": "tfrecord", "tf-dataset": "saved",
           "csv": "csv", "jsonl": "jsonl"}


def _uri(source: Source) -> str:
    return source.uri if isinstance(source, DataRef) else str(source)


def list_files(source: Source, pattern: str = "*") -> List[str]:
    """The files a data input names, sorted: a folder's files (in subfolders too) whose base name matches
    `pattern`, the files a glob pattern matches, or the one file.

    Raises:
        checks.InputError: If there are none.
    """
    uri = _uri(source).rstrip("/")
    if any(c in uri for c in _WILDCARDS):
        files = [f for f in tf.io.gfile.glob(uri) if not tf.io.gfile.isdir(f)]
    elif tf.io.gfile.isdir(uri):
        files = [f"{root.rstrip('/')}/{name}" for root, _, names in tf.io.gfile.walk(uri)
                 for name in names if fnmatch.fnmatchcase(name, pattern)]
    else:
        files = [uri] if tf.io.gfile.exists(uri) else []
    if not files:
        raise checks.InputError(f"data input {checks.shown(uri)} holds no files matching {pattern!r}.")
    return sorted(files)


def _num_pipelines(input_context: Optional[tf.distribute.InputContext]) -> int:
    return input_context.num_input_pipelines if input_context is not None else 1


def _files_then_records(files: List[str], make: Callable[[tf.Tensor], tf.data.Dataset],
                        input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
    """The examples of `files` (read in order, `make(file)` each), this input pipeline's shard of them."""
    pipelines = _num_pipelines(input_context)
    names = tf.data.Dataset.from_tensor_slices(files)
    by_file = pipelines > 1 and len(files) >= pipelines
    if by_file:
        names = names.shard(pipelines, input_context.input_pipeline_id)
    examples = names.interleave(make, cycle_length=1)  # File by file, in order.
    if pipelines > 1 and not by_file:
        examples = examples.shard(pipelines, input_context.input_pipeline_id)
    return examples


def tfrecord_dataset(source: Source, feature_spec: Mapping[str, Any], *, pattern: str = "*.tfrecord",
                     compression: Optional[str] = None,
                     input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """`tf.train.Example`s from TFRecord files, parsed with `feature_spec` (`tf.io.FixedLenFeature` & co.).

    Args:
        source: A `DataRef` or URI (see `list_files`; a folder's files must match `pattern`).
        feature_spec: Feature name -> `tf.io` feature, as for `tf.io.parse_single_example`.
        pattern: The base names to read in a folder.
        compression: `GZIP`, `ZLIB` or None.
        input_context: The input pipeline's context, for its shard.
    """
    files = list_files(source, pattern)
    spec = dict(feature_spec)
    records = _files_then_records(files, lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                                  input_context)
    return records.map(lambda record: tf.io.parse_single_example(record, spec),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def saved_dataset(source: Source, *,
                  input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """The elements of a folder written by `tf.data.Dataset.save` (its element spec is read from it)."""
    uri = _uri(source).rstrip("/")
    try:
        dataset = tf.data.Dataset.load(uri)
    except (tf.errors.NotFoundError, FileNotFoundError, ValueError) as e:
        raise checks.InputError(f"data input {checks.shown(uri)} is not a tf.data.Dataset.save folder: {e}") from None
    pipelines = _num_pipelines(input_context)
    return dataset.shard(pipelines, input_context.input_pipeline_id) if pipelines > 1 else dataset


def _header(path: str, delimiter: str) -> List[str]:
    with tf.io.gfile.GFile(path, "r") as f:
        line = f.readline().rstrip("\r\n")
    return [c.strip() for c in line.split(delimiter)]


def csv_dataset(source: Source, column_defaults: Optional[Mapping[str, Any]] = None, *, pattern: str = "*.csv",
                delimiter: str = ",",
                input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Rows of CSV files with a header line, as dicts by column name.

    Args:
        source: A `DataRef` or URI (see `list_files`). Every file starts with the same header line.
        column_defaults: Column name -> the value an empty field takes; its type is the column's type (`0.0`
            float32, `0` int32, `""` string; a dtype such as `tf.int64` makes the field required). Only these
            columns are read. None: every column, as float32 (required).
        pattern: The base names to read in a folder.
        delimiter: The field delimiter.
        input_context: The input pipeline's context, for its shard.

    Raises:
        checks.InputError: If a named column is not in the header.
    """
    files = list_files(source, pattern)
    header = _header(files[0], delimiter)
    wanted = dict(column_defaults) if column_defaults is not None else {name: tf.float32 for name in header}
    missing = sorted(set(wanted) - set(header))
    if missing:
        raise checks.InputError(f"data input {checks.shown(_uri(source))}: column(s) {missing} are not in the CSV "
                                f"header {header}.")
    selected = [i for i, name in enumerate(header) if name in wanted]
    names = [header[i] for i in selected]
    defaults = [wanted[name] for name in names]
    rows = _files_then_records(
        files, lambda f: tf.data.experimental.CsvDataset(f, defaults, header=True, field_delim=delimiter,
                                                          select_cols=selected), input_context)
    return rows.map(lambda *fields: dict(zip(names, fields)))


def jsonl_dataset(source: Source, output_signature: Mapping[str, tf.TensorSpec], *, pattern: str = "*.jsonl",
                  input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Objects of JSON Lines files (one JSON object per line), as dicts of the signature's keys.

    Args:
        source: A `DataRef` or URI (see `list_files`).
        output_signature: Key -> `tf.TensorSpec` of each value read (other keys are ignored).
        pattern: The base names to read in a folder.
        input_context: The input pipeline's context, for its shard.
    """
    files = list_files(source, pattern)
    signature = dict(output_signature)

    def lines(path: bytes) -> Any:
        name = path.decode()
        with tf.io.gfile.GFile(name, "r") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                missing = [key for key in signature if key not in row]
                if missing:
                    raise ValueError(f"{name}:{number} has no key(s) {missing}")
                yield {key: row[key] for key in signature}

    return _files_then_records(
        files, lambda f: tf.data.Dataset.from_generator(lines, output_signature=signature, args=(f,)), input_context)


def read(source: DataRef, *, feature_spec: Optional[Mapping[str, Any]] = None,
         column_defaults: Optional[Mapping[str, Any]] = None,
         output_signature: Optional[Mapping[str, tf.TensorSpec]] = None,
         input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Reads a data input with the reader its `format` metadata names (see the module docstring).

    Raises:
        checks.InputError: If the format is missing or unknown, or its reader's argument is not given.
    """
    kind = FORMATS.get((source.format or "").lower())
    if kind is None:
        raise checks.InputError(
            f"data input {checks.shown(source.uri)} has format {checks.shown(source.format)}; readable formats: "
            f"{sorted(FORMATS)} (set the Dataset's metadata['format'], or call a reader directly).")
    needed: Dict[str, Any] = {"tfrecord": ("feature_spec", feature_spec), "jsonl": ("output_signature", output_signature)}
    if kind in needed and needed[kind][1] is None:
        raise checks.InputError(f"data input {checks.shown(source.uri)} ({kind}) needs `{needed[kind][0]}`.")
    if kind == "tfrecord":
        return tfrecord_dataset(source, feature_spec, pattern="*", input_context=input_context)
    if kind == "saved":
        return saved_dataset(source, input_context=input_context)
    if kind == "csv":
        return csv_dataset(source, column_defaults, pattern="*", input_context=input_context)
    return jsonl_dataset(source, output_signature, pattern="*", input_context=input_context)
