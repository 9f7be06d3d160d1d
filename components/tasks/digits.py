"""The built-in example: handwritten digits (8x8 images, 10 classes) with a small classifier.

The data is the UCI digits set that scikit-learn ships (`sklearn.datasets.load_digits`):
nothing is downloaded. Given data inputs (`train_data`, `eval_data`, `test_data`: a
KFP `Dataset` or a URI, see `tfpipe.components.common.data`), the task reads every
`*.tfrecord` file in each instead, in the format `write_tfrecords` writes (an
`image` of 64 floats in [0, 1] and an int64 `label` per `tf.train.Example`);
evaluation reads `test_data` when it is given, else `eval_data`, else the bundled
split. With `task_config['data_uri']` set, the data is read from TFRecord files
`train-*.tfrecord` and `eval-*.tfrecord` at that URI (gs:// included), as
`write_tfrecords(uri)` writes them from the bundled data.
"""

import dataclasses
import importlib.util
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from tfpipe import checks
from tfpipe.components.common.data import DataInputs
from tfpipe.components.tasks import readers
from tfpipe.components.tasks import task_factory
from tfpipe.components.tasks.base import Task
from tfpipe.components.tasks.config import config_from_dict

NUM_CLASSES = 10
NUM_FEATURES = 64
CLASS_NAMES = [str(d) for d in range(NUM_CLASSES)]


@dataclasses.dataclass
class DigitsConfig:
    """Config of the `digits` task; every key is optional.

    Attributes:
        batch_size: Global batch size for training and evaluation.
        learning_rate: Adam's learning rate.
        hidden_units: Width of the hidden layer.
        eval_fraction: Share of the bundled data held out for evaluation.
        seed: Seed for the weights, the split and the shuffle order.
        data_uri: Read TFRecords from this URI instead of the bundled data.
        one_vs_rest: A digit: classify "this digit" against the rest (a binary
            task, with an ROC curve) instead of all ten digits.
    """

    batch_size: int = 64
    learning_rate: float = 0.005
    hidden_units: int = 64
    eval_fraction: float = 0.2
    seed: int = 0
    data_uri: Optional[str] = None
    one_vs_rest: Optional[int] = None

    def validate(self) -> None:
        for key, value, low, high in (("batch_size", self.batch_size, 1, 2**20),
                                      ("hidden_units", self.hidden_units, 1, 2**16),
                                      ("seed", self.seed, 0, 2**32 - 1)):
            if not low <= value <= high:
                raise checks.InputError(
                    f"`task_config['{key}']` must be an integer from {low} to {high}, got {checks.shown(value)}.")
        if not 0 < self.learning_rate < 1e3:
            raise checks.InputError(
                f"`task_config['learning_rate']` must be > 0 (and < 1000), got {checks.shown(self.learning_rate)}.")
        if not 0 < self.eval_fraction < 1:
            raise checks.InputError(
                f"`task_config['eval_fraction']` must be between 0 and 1, got {checks.shown(self.eval_fraction)}.")
        if self.one_vs_rest is not None and not 0 <= self.one_vs_rest < NUM_CLASSES:
            raise checks.InputError(
                f"`task_config['one_vs_rest']` must be a digit 0-9 or null, got {checks.shown(self.one_vs_rest)}.")
        if self.data_uri is not None:
            checks.check_uri("task_config['data_uri']", self.data_uri)


# The file `sklearn.datasets.load_digits` reads, inside the installed scikit-learn package.
BUNDLED_DIGITS = ("datasets", "data", "digits.csv.gz")


def bundled_digits() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: `(pixels, labels)`, 64 pixel values from 0 to 16 per image.

    Read from the file `sklearn.datasets.load_digits` reads, found without importing scikit-learn: the import
    costs each step process about 0.8 s, the read 0.02 s. Where the file is not there (another layout), through
    `load_digits` itself (tests/test_private_internals.py checks that both give the same arrays).

    Raises:
        checks.MissingExtraError: If scikit-learn is not installed (the `examples` extra).
    """
    spec = importlib.util.find_spec("sklearn")
    folders = spec.submodule_search_locations if spec is not None else None
    for folder in folders or []:
        path = os.path.join(folder, *BUNDLED_DIGITS)
        if os.path.exists(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    datasets = checks.import_extra(
        "sklearn.datasets", extra="examples",
        needed_for="task 'digits' without `task_config['data_uri']` (it reads scikit-learn's bundled digits)")
    data = datasets.load_digits()
    return data.data, data.target.astype(np.int64)


def load_arrays(config: DigitsConfig) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """Returns `((train_x, train_y), (eval_x, eval_y))` from scikit-learn's bundled digits.

    Features are scaled to [0, 1]; the split is a fixed permutation from `seed`.
    """
    pixels, labels = bundled_digits()
    x, y = (pixels / 16.0).astype(np.float32), labels
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_eval = int(round(len(x) * config.eval_fraction))
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    return (x[train_idx], y[train_idx]), (x[eval_idx], y[eval_idx])


FEATURE_SPEC = {
    "image": tf.io.FixedLenFeature([NUM_FEATURES], tf.float32),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def _write_shards(uri: str, prefix: str, x: np.ndarray, y: np.ndarray, shards: int) -> List[str]:
    paths = []
    for shard in range(shards):
        path = f"{uri.rstrip('/')}/{prefix}-{shard:05d}-of-{shards:05d}.tfrecord"
        with tf.io.TFRecordWriter(path) as w:
            for features, label in zip(x[shard::shards], y[shard::shards]):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(float_list=tf.train.FloatList(value=features)),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                }))
                w.write(example.SerializeToString(deterministic=True))  # The same examples, the same bytes.
        paths.append(path)
    return paths


def write_tfrecords(uri: str, images: Optional[Sequence[Any]] = None, labels: Optional[Sequence[int]] = None, *,
                    config: Optional[DigitsConfig] = None, shards: int = 2, prefix: str = "part") -> List[str]:
    """Writes digits as TFRecord shards at `uri` (gs:// included), deterministically serialized.

    Args:
        uri: The folder (e.g. a KFP `Output[Dataset]`'s `path`).
        images: Examples to write, each 64 floats in [0, 1] (e.g. a subset or a transform of `load_arrays`'s);
            with `labels`, as `<prefix>-NNNNN-of-NNNNN.tfrecord`, the files `train_data`/`eval_data` are read from.
            None: the bundled data's two splits, as `train-*.tfrecord` and `eval-*.tfrecord` (what
            `task_config['data_uri']` reads).
        labels: The digit of each image.
        config: With `images` None: the split's `eval_fraction` and `seed`.
        shards: Files per split.
        prefix: The file names' prefix, with `images`.

    Returns:
        The paths written.
    """
    tf.io.gfile.makedirs(uri)
    if images is None:
        (tx, ty), (ex, ey) = load_arrays(config or DigitsConfig())
        return _write_shards(uri, "train", tx, ty, shards) + _write_shards(uri, "eval", ex, ey, shards)
    x, y = np.asarray(images, np.float32), np.asarray(labels, np.int64)
    if x.ndim != 2 or x.shape[1] != NUM_FEATURES or y.shape != (len(x),):
        raise ValueError(f"`images` must be N x {NUM_FEATURES} and `labels` N digits; got {x.shape} and {y.shape}.")
    return _write_shards(uri, prefix, x, y, shards)


def _as_pairs(examples: tf.data.Dataset) -> tf.data.Dataset:
    return examples.map(lambda e: (e["image"], e["label"]))


def _tfrecord_dataset(uri: str, split: str) -> tf.data.Dataset:
    pattern = f"{uri.rstrip('/')}/{split}-*.tfrecord"
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"`task_config['data_uri']` ({uri!r}) holds no {split} TFRecords matching {pattern!r}.")
    return _as_pairs(readers.tfrecord_dataset(pattern, FEATURE_SPEC))


def _for_input_pipeline(
    ds: tf.data.Dataset, global_batch: int, input_context: Optional[tf.distribute.InputContext]
) -> Tuple[tf.data.Dataset, int]:
    """This input pipeline's shard of `ds` and its per-replica batch size (all of it without a context)."""
    if input_context is None:
        return ds, global_batch
    shard = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return shard, input_context.get_per_replica_batch_size(global_batch)


@task_factory
def build(config_dict: Dict[str, Any], *, data: Optional[DataInputs] = None) -> Task:
    """The `digits` task factory: call it inside the strategy's scope.

    Args:
        config_dict: Keys of `DigitsConfig` (all optional).
        data: The step's data inputs: every `*.tfrecord` file of `data.train` is the training data, of
            `data.test` (else `data.eval`) the evaluation data; what is not given comes from the bundled data.

    Returns:
        The task.
    """
    config = config_from_dict(DigitsConfig, config_dict, task="digits")
    data = data or DataInputs()
    if data and config.data_uri:
        raise checks.InputError(
            f"task 'digits' was given data inputs {sorted(data.given())} and `task_config['data_uri']` "
            f"({checks.shown(config.data_uri)}): give the data one way.")
    if config.data_uri:
        train, evaluation = _tfrecord_dataset(config.data_uri, "train"), _tfrecord_dataset(config.data_uri, "eval")
    else:
        train = evaluation = None
        if data.train is None or (data.test or data.eval) is None:
            (tx, ty), (ex, ey) = load_arrays(config)
            train = tf.data.Dataset.from_tensor_slices((tx, ty))
            evaluation = tf.data.Dataset.from_tensor_slices((ex, ey))
        if data.train is not None:
            train = _as_pairs(readers.tfrecord_dataset(data.train, FEATURE_SPEC))
        if (data.test or data.eval) is not None:
            evaluation = _as_pairs(readers.tfrecord_dataset(data.test or data.eval, FEATURE_SPEC))
    classes = CLASS_NAMES
    if config.one_vs_rest is not None:
        digit = config.one_vs_rest
        classes = [f"not {digit}", str(digit)]
        relabel = lambda x, y: (x, tf.cast(tf.equal(y, digit), tf.int64))  # noqa: E731
        train, evaluation = train.map(relabel), evaluation.map(relabel)

    def train_dataset(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        ds, batch = _for_input_pipeline(train, config.batch_size, input_context)
        ds = ds.cache().shuffle(2048, seed=config.seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        ds, batch = _for_input_pipeline(evaluation, config.batch_size, input_context)
        return ds.cache().batch(batch).prefetch(tf.data.AUTOTUNE)

    tf_keras.utils.set_random_seed(config.seed)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input(shape=(NUM_FEATURES,), name="image"),
            tf_keras.layers.Dense(config.hidden_units, activation="relu"),
            tf_keras.layers.Dense(len(classes), name="logits"),
        ],
        name="digits",
    )

    @tf.function(input_signature=[tf.TensorSpec([None, NUM_FEATURES], tf.float32, name="image")])
    def serve(image: tf.Tensor) -> Dict[str, tf.Tensor]:
        logits = model(image, training=False)
        return {
            "probabilities": tf.nn.softmax(logits),
            "class_id": tf.argmax(logits, axis=-1),
        }

    return Task(
        name="digits",
        model=model,
        optimizer=tf_keras.optimizers.Adam(config.learning_rate),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none"),
        metrics=lambda: [tf_keras.metrics.SparseCategoricalAccuracy("accuracy")],
        serving_signature=serve,
        class_names=classes,
        global_batch_size=config.batch_size,
        best_metric="accuracy",
        best_mode="higher",
        config=dataclasses.asdict(config),
        eval_only_config_keys=("batch_size",),
    )
