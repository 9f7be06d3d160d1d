"""Training curves for the evaluation report, read from the run's TensorBoard events in `<model_dir>/train/`.

The controller writes each train loop's outputs there as scalar summaries: `name` in `train/`, a nested
output `{"a": {"b": x}}` as `b` in `train/a/` (what an eval record flattens to `a/b`). TensorBoard's own
`EventAccumulator` reads them, on any `tf.io.gfile` URI (gs:// included, as TensorFlow is loaded), and
keeps its place in the event files, so each read only loads events written since the last one.

Example::

    curves = TrainingCurves.for_eval_dir("gs://bucket/run/eval/validation")  # reads gs://bucket/run/train
    curves.read(["loss", "accuracy"])  # {"loss": [(100, 0.93), (200, 0.41)]}; no "accuracy" if never written
"""

import posixpath
from typing import Dict, List, Sequence, Tuple

from tensorboard.backend.event_processing import directory_watcher
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.util import tensor_util

TRAIN = "train"
"""The run directory's training summaries folder."""

Curve = List[Tuple[int, float]]


class TrainingCurves:
    """The scalar curves under one training summaries directory, read incrementally.

    A directory that does not exist (yet) has no curves: an evaluate-only run, or training with summaries
    off, simply gets no training line in the report.
    """

    def __init__(self, train_dir: str) -> None:
        """Initializes the reader.

        Args:
            train_dir: The training summaries directory (`<model_dir>/train`), any `tf.io.gfile` URI.
        """
        self.train_dir = train_dir.rstrip("/")
        self._accumulators: Dict[str, plugin_event_accumulator.EventAccumulator] = {}
        # (sub-directory, tag) -> (events converted so far, value by step): each event is converted once.
        self._values: Dict[Tuple[str, str], Tuple[int, Dict[int, float]]] = {}

    @classmethod
    def for_eval_dir(cls, eval_dir: str) -> "TrainingCurves":
        """The reader of the run whose evaluator directory is `eval_dir` (`<model_dir>/eval/<eval_name>`)."""
        model_dir = posixpath.dirname(posixpath.dirname(eval_dir.rstrip("/")))
        return cls(f"{model_dir}/{TRAIN}")

    def read(self, names: Sequence[str]) -> Dict[str, Curve]:
        """The training curve of each of `names` that training reports, as (step, value) pairs by step.

        A name `a/b` is the tag `a/b` in the training directory or, failing that, the tag `b` in its
        sub-directory `a/`. When a restarted run wrote a step again, the value written last counts.
        """
        reloaded: Dict[str, plugin_event_accumulator.EventAccumulator] = {}
        curves = {}
        for name in names:
            folder, _, tag = name.rpartition("/")
            for relative, tag_there in [("", name)] + ([(folder, tag)] if folder else []):
                if relative not in reloaded:
                    reloaded[relative] = self._reload(relative)
                curve = self._scalar_curve(relative, reloaded[relative], tag_there)
                if curve:
                    curves[name] = curve
                    break
        return curves

    def _reload(self, relative: str) -> plugin_event_accumulator.EventAccumulator:
        """The accumulator of `train_dir/relative`, with every event written so far loaded."""
        accumulator = self._accumulators.get(relative)
        if accumulator is None:
            path = posixpath.join(self.train_dir, relative) if relative else self.train_dir
            accumulator = plugin_event_accumulator.EventAccumulator(
                path,
                size_guidance={plugin_event_accumulator.TENSORS: 0},  # Keep every point, not a sample.
                purge_orphaned_data=False,  # Restarts are resolved by step in `read`.
            )
            self._accumulators[relative] = accumulator
        try:
            accumulator.Reload()
        except directory_watcher.DirectoryDeletedError:
            pass  # No such directory (yet): nothing was written there.
        return accumulator

    def _scalar_curve(self, relative: str, accumulator: plugin_event_accumulator.EventAccumulator, tag: str) -> Curve:
        """The scalar summary `tag` as (step, value) pairs sorted by step, the last write of a step kept."""
        if tag not in accumulator.summary_metadata:
            return []
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name != scalar_metadata.PLUGIN_NAME:
            return []
        events = accumulator.Tensors(tag)  # Every event so far, in the order written (none are dropped).
        converted, by_step = self._values.get((relative, tag), (0, {}))
        for event in events[converted:]:
            by_step[event.step] = float(tensor_util.make_ndarray(event.tensor_proto))
        self._values[(relative, tag)] = (len(events), by_step)
        return sorted(by_step.items())
