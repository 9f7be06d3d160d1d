"""Exporting SavedModels from an action, under managed, numbered names."""

import os
import re
import uuid
from typing import Any, Callable, List, Optional

from absl import logging
import tensorflow as tf

from tfpipe.controller_core import run_dir
from tfpipe.controller_core import runner

_TMP_MARK = ".tmp-"
_GS_PREFIX = "gs://"


def safe_normpath(path: str) -> str:
    """`os.path.normpath(path)` that keeps the `//` of a `gs://` URI.

    Collapses `a//b`, `a/./b` and a trailing `/`, so names built from the path
    match what `tf.io.gfile.glob` returns.
    """
    if path.startswith(_GS_PREFIX):
        return _GS_PREFIX + os.path.normpath(path[len(_GS_PREFIX):])
    return os.path.normpath(path)


def _export_id(path: str) -> int:
    return int(path.rsplit("-", 1)[1])


def _numbered_paths(base_name: str) -> List[str]:
    """Paths `{base_name}-{id}` that exist (any content), by ascending id."""
    pattern = re.compile(re.escape(base_name) + r"-\d+$")
    return sorted((p for p in tf.io.gfile.glob(f"{base_name}-*") if pattern.match(p)), key=_export_id)


class _CounterIdFn:
    """Counts up from one past the largest id on disk when created."""

    def __init__(self, base_name: str) -> None:
        paths = _numbered_paths(base_name)
        self.value = _export_id(paths[-1]) + 1 if paths else 0

    def __call__(self) -> int:
        value = self.value
        self.value += 1
        return value


class ExportFileManager:
    """Hands out numbered export names `{base_name}-{id}[/{subdirectory}]` and prunes old ones.

    As in Orbit: `base_name` is normalised (`safe_normpath`); the managed files
    are the existing `{base_name}-{id}/{subdirectory}` (`{base_name}-{id}`
    without a subdirectory), ordered by id; `clean_up` removes those beyond the
    newest `max_to_keep` and leaves the `{base_name}-{id}` directory of a removed
    subdirectory in place. By default ids count up from one past the largest id
    on disk when the manager is created, so a restarted job continues the
    numbering; pass `next_id_fn=global_step.numpy` to number exports by step.
    """

    def __init__(
        self,
        base_name: str,
        max_to_keep: int = 5,
        next_id_fn: Optional[Callable[[], int]] = None,
        subdirectory: Optional[str] = None,
    ) -> None:
        """Initializes the manager.

        Args:
            base_name: Path prefix of the exports (any `tf.io.gfile` URI).
            max_to_keep: Exports `clean_up` keeps (the highest ids); a value
                below 1 keeps all (Orbit: a negative one; 0 deletes nothing there
                either).
            next_id_fn: Returns the id of the next export; default: a counter.
            subdirectory: A sub-directory inside each numbered directory that
                holds the export (e.g. a version folder).
        """
        self._base_name = safe_normpath(base_name)
        self._max_to_keep = max_to_keep
        self._next_id_fn = next_id_fn or _CounterIdFn(self._base_name)
        self._subdirectory = subdirectory or ""

    @property
    def managed_files(self) -> List[str]:
        """Existing exports, oldest (lowest id) first."""
        paths = (self._with_subdirectory(p) for p in _numbered_paths(self._base_name))
        return [p for p in paths if tf.io.gfile.exists(p)]

    def next_name(self) -> str:
        """Returns the path for the next export."""
        return self._with_subdirectory(f"{self._base_name}-{self._next_id_fn()}")

    def clean_up(self) -> None:
        """Deletes all but the newest `max_to_keep` exports, and leftovers of interrupted exports."""
        for leftover in tf.io.gfile.glob(f"{self._base_name}-*{_TMP_MARK}*") + tf.io.gfile.glob(
            f"{self._base_name}-*/*{_TMP_MARK}*"
        ):
            logging.info("Removing the leftover of an interrupted export: %s", leftover)
            run_dir.remove_if_present(leftover, tree=True)
        if self._max_to_keep < 1:
            return
        for path in self.managed_files[: -self._max_to_keep]:
            tf.io.gfile.rmtree(path)

    def _with_subdirectory(self, path: str) -> str:
        return safe_normpath(os.path.join(path, self._subdirectory))


class ExportSavedModel:
    """An action that exports a SavedModel to the file manager's next name.

    The SavedModel is written to a temporary sibling and renamed into place
    only once complete, so a crash never leaves a partial export under a managed
    name; an export whose name already exists is skipped, never overwritten.
    """

    def __init__(
        self,
        model: tf.Module,
        file_manager: ExportFileManager,
        signatures: Any,
        options: Optional[tf.saved_model.SaveOptions] = None,
    ) -> None:
        """Initializes the action.

        Args:
            model: The module to export.
            file_manager: Chooses export names and prunes old exports.
            signatures: Passed to `tf.saved_model.save`.
            options: Passed to `tf.saved_model.save`.
        """
        self.model = model
        self.file_manager = file_manager
        self.signatures = signatures
        self.options = options

    def __call__(self, output: runner.Output) -> None:
        export_dir = self.file_manager.next_name()
        if tf.io.gfile.exists(export_dir):
            logging.warning("Export %s exists already; not overwriting it.", export_dir)
            return
        tmp_dir = f"{export_dir.rstrip('/')}{_TMP_MARK}{uuid.uuid4().hex[:8]}"
        try:
            tf.saved_model.save(self.model, tmp_dir, self.signatures, self.options)
            parent = export_dir.rstrip("/").rsplit("/", 1)[0]
            tf.io.gfile.makedirs(parent)
            tf.io.gfile.rename(tmp_dir, export_dir, overwrite=False)
        finally:
            run_dir.remove_if_present(tmp_dir, tree=True)
        self.file_manager.clean_up()
