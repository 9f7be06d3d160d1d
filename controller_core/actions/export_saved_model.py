"""Exporting SavedModels from an action, under managed, numbered names."""

import re
import uuid
from typing import Any, Callable, List, Optional

from absl import logging
import tensorflow as tf

from tfpipe.controller_core import run_dir
from tfpipe.controller_core import runner

_TMP_MARK = ".tmp-"


def _join(base: str, *parts: str) -> str:
    """Joins URI parts with `/`, keeping `gs://` intact (os.path.normpath would not)."""
    return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts if p])


class ExportFileManager:
    """Hands out numbered export names `{base_name}-{id}[/{subdirectory}]` and prunes old ones.

    By default ids count up from one past the largest id already on disk, so a
    restarted job continues the numbering; pass `next_id_fn=global_step.numpy`
    to number exports by step.
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
            max_to_keep: Exports `clean_up` keeps (the highest ids); a negative
                value keeps all.
            next_id_fn: Returns the id of the next export; default: a counter.
            subdirectory: A sub-directory inside each numbered directory that
                holds the export (e.g. a version folder).
        """
        self._base_name = base_name.rstrip("/")
        self._max_to_keep = max_to_keep
        self._subdirectory = subdirectory
        self._next_id_fn = next_id_fn or self._counter_id
        self._pattern = re.compile(re.escape(self._base_name) + r"-(\d+)$")

    @property
    def managed_files(self) -> List[str]:
        """Complete exports, oldest (lowest id) first."""
        return [path for _, path in self._exports()]

    def next_name(self) -> str:
        """Returns the path for the next export."""
        return self._path(int(self._next_id_fn()))

    def clean_up(self) -> None:
        """Deletes all but the newest `max_to_keep` exports, and leftovers of interrupted exports."""
        for leftover in tf.io.gfile.glob(f"{self._base_name}-*{_TMP_MARK}*"):
            logging.info("Removing the leftover of an interrupted export: %s", leftover)
            tf.io.gfile.rmtree(leftover)
        if self._max_to_keep < 0:
            return
        exports = self._exports()
        for export_id, _ in exports[: max(0, len(exports) - self._max_to_keep)]:
            tf.io.gfile.rmtree(f"{self._base_name}-{export_id}")

    def _path(self, export_id: int) -> str:
        return _join(f"{self._base_name}-{export_id}", self._subdirectory or "")

    def _exports(self) -> List[tuple]:
        found = []
        for path in tf.io.gfile.glob(f"{self._base_name}-*"):
            match = self._pattern.match(path.rstrip("/"))
            if match and tf.io.gfile.exists(self._path(int(match.group(1)))):
                found.append((int(match.group(1)), self._path(int(match.group(1)))))
        return sorted(found)

    def _counter_id(self) -> int:
        exports = self._exports()
        return exports[-1][0] + 1 if exports else 0


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
