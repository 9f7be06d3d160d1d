"""What-if patches: controller_core with candidate fixes applied by monkeypatching, for the benchmark only.

The worker candidate ``controller_whatif`` (``python -m bench.run --parts controller_overhead
--candidates raw,raw_loop,controller,controller_whatif,orbit``) runs ``controller_core`` with these patches, so
a proposed fix can be measured side by side before anyone edits ``controller_core``. Nothing here changes
``controller_core`` for any other process.

Patches (each names the code it stands in for):

* ``summaries``: ``controller_core/utils/summary_manager.py`` ``SummaryManager.write_summaries`` /
  ``flush``: return at once when ``summary_dir`` is None (Orbit's ``SummaryManager`` has ``_enabled`` for this).
  As is, every train loop calls ``tf.summary.scalar`` on a no-op writer once per output (loss and
  steps_per_second here): name scopes, tensor conversions and a ``should_record_summaries`` check per call.
* ``step_timer``: ``controller_core/controller.py`` ``_train_n_steps`` calls ``self.step_timer.start()``
  before every ``trainer.train`` and then ``steps_per_second()``, whose default ``restart=True`` calls
  ``start()`` again: one ``global_step.numpy()`` per loop for nothing. The patch makes ``steps_per_second``
  not restart (the next loop's ``start()`` opens the window anyway).
"""

from __future__ import annotations

from typing import Iterable

PATCHES = ("summaries", "step_timer")


def apply(patches: Iterable[str] = PATCHES) -> None:
    from tfpipe.controller_core import controller
    from tfpipe.controller_core.utils import summary_manager

    patches = set(patches)
    unknown = patches - set(PATCHES)
    if unknown:
        raise ValueError(f"unknown patches {sorted(unknown)}; known: {PATCHES}")
    if "summaries" in patches:
        cls = summary_manager.SummaryManager
        write, flush = cls.write_summaries, cls.flush

        def write_summaries(self, summary_dict):  # type: ignore[no-untyped-def]
            if self._summary_dir is None:
                return
            write(self, summary_dict)

        def flush_if_enabled(self):  # type: ignore[no-untyped-def]
            if self._summary_dir is None:
                return
            flush(self)

        cls.write_summaries = write_summaries
        cls.flush = flush_if_enabled
    if "step_timer" in patches:
        timer = controller.StepTimer
        steps_per_second = timer.steps_per_second

        def no_restart(self, restart: bool = True) -> float:  # type: ignore[no-untyped-def]
            return steps_per_second(self, restart=False)

        timer.steps_per_second = no_restart
