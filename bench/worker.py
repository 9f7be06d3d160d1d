"""A benchmark worker process: ``python -m bench.worker --candidate NAME``, driven by ``bench.common.Worker``.

It reads one JSON request per line on stdin and answers one JSON line on the pipe that was its stdout; its own
stdout (the controllers' log lines) and stderr go to the log file the parent passed as stderr. Only the modules
of its candidate are imported: the Orbit worker never imports ``controller_core`` and the other workers never
import ``orbit``.

Candidates (all train the same model on the same data with the same step function, except `keras`, which uses
``Model.fit``'s own step with the same loss):

* ``raw``: one ``tf.function`` running a ``tf.range`` loop over all the steps of a measurement (with
  checkpoints: one call per checkpoint interval) - the speed limit;
* ``raw_loop``: a bare Python loop calling that ``tf.function`` once per ``steps_per_loop`` steps - the floor
  for any controller that returns to Python every loop;
* ``controller``: ``controller_core.Controller`` with a ``controller_core.StandardTrainer``;
* ``controller_whatif``: ``controller`` with the candidate fixes of ``bench/whatif.py`` monkeypatched in;
* ``orbit``: ``orbit.Controller`` with an ``orbit.StandardTrainer`` (TensorFlow Model Garden's Orbit);
* ``keras``: ``tf_keras.Model.fit(steps_per_execution=steps_per_loop)``;
* ``ckpt_io``: checkpoint save/restore timings of models of a given size;
* ``accel``: one precision / XLA / loop configuration of the accelerators part (``bench/accel_training.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

from bench import digits

CONTROLLERS = ("controller", "controller_whatif", "orbit")
TRAINING_CANDIDATES = ("raw", "raw_loop", "keras") + CONTROLLERS


# ---------------------------------------------------------------------------------------------------- training


class IntervalSaver:
    """Saves when a multiple of ``interval`` was crossed since the last save (the controllers' rule)."""

    def __init__(self, manager: Any, interval: int, enable_async: bool, step: int) -> None:
        import tensorflow as tf

        self.manager = manager
        self.interval = interval
        self.options = tf.train.CheckpointOptions(enable_async=enable_async)
        self.anchor = step
        self.last_saved: Optional[int] = None

    def maybe_save(self, step: int, force: bool = False) -> None:
        if step == self.last_saved:
            return
        if not force:
            anchor = self.last_saved if self.last_saved is not None else self.anchor
            if step // self.interval <= anchor // self.interval:
                return
        self.manager.save(checkpoint_number=step, check_interval=False, options=self.options)
        self.last_saved = step

    def finish(self, step: int) -> None:
        self.maybe_save(step, force=True)
        self.manager.sync()


class Training:
    """One candidate's model, data and per-configuration state (controllers, checkpoint managers)."""

    def __init__(self, candidate: str, *, seed: int, batch_size: int, hidden_units: int, learning_rate: float,
                 ckpt_root: str) -> None:
        import tensorflow as tf
        import tf_keras

        self.tf = tf
        self.candidate = candidate
        self.ckpt_root = ckpt_root
        tf_keras.utils.set_random_seed(seed)
        x, y, self.data_source = digits.digits_arrays(seed)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).cache()
        dataset = dataset.shuffle(2048, seed=seed, reshuffle_each_iteration=True).repeat()
        self.dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        self.model = tf_keras.Sequential(
            [
                tf_keras.layers.Input(shape=(64,)),
                tf_keras.layers.Dense(hidden_units, activation="relu"),
                tf_keras.layers.Dense(10),
            ]
        )
        self.optimizer = tf_keras.optimizers.Adam(learning_rate)
        self.loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_metric = tf_keras.metrics.Mean("loss")
        self.global_step = self.optimizer.iterations
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.configs: Dict[str, Dict[str, Any]] = {}
        self.keras_spl: Optional[int] = None

        model, optimizer, loss_fn, loss_metric = self.model, self.optimizer, self.loss_fn, self.loss_metric

        def train_step(iterator: Any) -> None:
            features, labels = next(iterator)
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(features, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            loss_metric.update_state(loss)

        self.train_step = train_step
        if candidate in ("raw", "raw_loop"):

            @tf.function
            def loop(iterator: Any, num_steps: tf.Tensor) -> None:
                for _ in tf.range(num_steps):
                    train_step(iterator)

            self.loop = loop
            self.iterator = iter(self.dataset)
        elif candidate in CONTROLLERS:
            if candidate == "controller":
                import tfpipe.controller_core as lib
            elif candidate == "controller_whatif":
                import tfpipe.controller_core as lib
                from bench import whatif

                whatif.apply()
            else:
                import orbit as lib  # From bench/.orbit-pkgs, on this worker's PYTHONPATH only.
            self.lib = lib

            class Trainer(lib.StandardTrainer):
                def train_loop_begin(self) -> None:
                    loss_metric.reset_state()

                def train_step(self, iterator: Any) -> None:
                    train_step(iterator)

                def train_loop_end(self) -> Dict[str, Any]:
                    return {"loss": loss_metric.result()}

            self.trainer = Trainer(self.dataset)
        elif candidate == "keras":
            self.model.compile(optimizer=self.optimizer, loss=self.loss_fn)
        else:
            raise ValueError(f"unknown training candidate {candidate!r}")

    # -- per-configuration state

    def _config(self, spl: int, mode: str, ckpt_every: int) -> Dict[str, Any]:
        key = f"spl{spl}-{mode}-every{ckpt_every}"
        if key in self.configs:
            return self.configs[key]
        tf = self.tf
        config: Dict[str, Any] = {"key": key}
        manager = None
        if mode != "none":
            manager = tf.train.CheckpointManager(
                self.checkpoint,
                directory=os.path.join(self.ckpt_root, f"{self.candidate}-{key}"),
                max_to_keep=3,
                step_counter=self.global_step,
                checkpoint_interval=ckpt_every,
            )
        config["manager"] = manager
        if self.candidate in CONTROLLERS:
            config["controller"] = self.lib.Controller(
                global_step=self.global_step,
                trainer=self.trainer,
                steps_per_loop=spl,
                checkpoint_manager=manager,
                enable_async_checkpointing=(mode == "async"),
            )
        self.configs[key] = config
        return config

    def _saver(self, config: Dict[str, Any], mode: str, ckpt_every: int) -> Optional[IntervalSaver]:
        if mode == "none":
            return None
        return IntervalSaver(config["manager"], ckpt_every, mode == "async", int(self.global_step.numpy()))

    def train(self, spl: int, mode: str, ckpt_every: int, steps: int) -> Dict[str, Any]:
        """Trains ``steps`` steps in configuration (spl, mode); returns wall seconds of just that."""
        tf = self.tf
        config = self._config(spl, mode, ckpt_every)
        if self.candidate == "keras" and self.keras_spl != spl:
            # steps_per_execution switches between a one-step and a looping train function: recompile (the
            # parent's warm-up call absorbs the retrace). The optimizer, and so the global step, is kept.
            self.model.compile(optimizer=self.optimizer, loss=self.loss_fn, steps_per_execution=spl)
            self.keras_spl = spl
        start_step = int(self.global_step.numpy())
        start_saves = int(self.checkpoint.save_counter.numpy())
        saver = self._saver(config, mode, ckpt_every)
        cpu0, t0 = time.process_time(), time.perf_counter()

        if self.candidate in ("raw", "raw_loop"):
            self.loss_metric.reset_state()
            if self.candidate == "raw":
                chunk = steps if saver is None else max(ckpt_every, spl)
            else:
                chunk = spl
            done = 0
            while done < steps:
                n = min(chunk, steps - done)
                self.loop(self.iterator, tf.convert_to_tensor(n, dtype=tf.int32))
                done += n
                if saver is not None:
                    saver.maybe_save(start_step + done)
            if saver is not None:
                saver.finish(start_step + done)
            loss = float(self.loss_metric.result().numpy())
        elif self.candidate in CONTROLLERS:
            config["controller"].train(start_step + steps)
            loss = float(self.loss_metric.result().numpy())
        else:  # keras
            callbacks = []
            if saver is not None:
                callbacks.append(_keras_saver_callback(saver, self.global_step))
            history = self.model.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
            loss = float(history.history["loss"][-1])

        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        end_step = int(self.global_step.numpy())
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "steps": end_step - start_step,
            "loss": loss,
            "saves": int(self.checkpoint.save_counter.numpy()) - start_saves,
        }


def _keras_saver_callback(saver: IntervalSaver, global_step: Any) -> Any:
    import tf_keras

    class Saver(tf_keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self._supports_tf_logs = True  # No per-batch conversion of logs to NumPy on our account.

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            saver.maybe_save(int(global_step.numpy()))

        def on_train_end(self, logs: Any = None) -> None:
            saver.finish(int(global_step.numpy()))

    return Saver()


# ---------------------------------------------------------------------------------------------------- checkpoint I/O


class CheckpointIO:
    """Save/restore timings of a checkpoint of about ``size_bytes`` float32 values, to several directories."""

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self.checkpoint = None
        self.managers: Dict[str, Any] = {}
        self.leases: List[Any] = []

    def make_model(self, size_bytes: int, n_vars: int, seed: int) -> Dict[str, Any]:
        tf = self.tf
        for writer in self.leases:
            writer.release()
        self.checkpoint, self.managers, self.leases = None, {}, []
        cols = 1024
        rows = max(1, size_bytes // (4 * cols * n_vars))
        tf.random.set_seed(seed)
        variables = [tf.Variable(tf.random.uniform([rows, cols]), name=f"w{i}") for i in range(n_vars)]
        self.checkpoint = tf.train.Checkpoint(variables=variables)
        return {"variables": n_vars, "param_bytes": 4 * rows * cols * n_vars}

    def _manager(self, label: str, directory: str) -> Any:
        """The manager of a target; `gcs_fenced` is the train component's: under a writer lease, staged on gs://."""
        if label not in self.managers:
            if label == "gcs_fenced":
                from tfpipe.components.common import fenced_saves, lease

                # Its own checkpoint object over the same variables: the staging hook is per checkpoint object.
                checkpoint = self.tf.train.Checkpoint(variables=list(self.checkpoint.variables))
                self.leases.append(lease.WriterLease(directory, wait=0).acquire())
                self.managers[label] = fenced_saves.fence_saves(
                    self.tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2), self.leases[-1])
            else:
                self.managers[label] = self.tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        return self.managers[label]

    def round(self, dirs: Dict[str, str], order: list) -> Dict[str, Any]:
        """For each directory in ``order``: a sync save, a restore, an async save (return and sync times)."""
        tf = self.tf
        results = {}
        for label in order:
            manager = self._manager(label, dirs[label])
            t0 = time.perf_counter()
            path = manager.save()
            save_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            self.checkpoint.restore(path).assert_existing_objects_matched()
            restore_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            manager.save(options=tf.train.CheckpointOptions(enable_async=True))
            async_return_s = time.perf_counter() - t0
            manager.sync()
            async_total_s = time.perf_counter() - t0

            size = sum(tf.io.gfile.stat(p).length for p in tf.io.gfile.glob(path + "*"))
            results[label] = {
                "save_s": save_s,
                "restore_s": restore_s,
                "async_save_return_s": async_return_s,
                "async_save_total_s": async_total_s,
                "checkpoint_bytes": size,
            }
        return results


# ---------------------------------------------------------------------------------------------------- main loop


def _serve(candidate: str, proto: Any) -> None:
    state: Any = None
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op == "quit":
                proto.write(json.dumps({"ok": True}) + "\n")
                return
            if op == "hello":
                import tensorflow  # noqa: F401  (the worker counts as ready once TensorFlow is imported)

                answer: Dict[str, Any] = {"pid": os.getpid()}
            elif op == "setup":
                if candidate == "ckpt_io":
                    state = CheckpointIO()
                    answer = {}
                elif candidate == "accel":
                    from bench.accel_training import AccelTraining

                    state = AccelTraining(**request)
                    answer = state.setup_answer
                else:
                    state = Training(candidate, **request)
                    answer = {"data": state.data_source}
            elif op == "train":
                answer = state.train(**request)
            elif op == "make_model":
                answer = state.make_model(**request)
            elif op == "ckpt_round":
                answer = state.round(**request)
            else:
                raise ValueError(f"unknown op {op!r}")
            answer["ok"] = True
        except Exception as error:  # Reported to the parent, which raises WorkerError.
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}
        proto.write(json.dumps(answer) + "\n")
        proto.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidate", required=True, choices=TRAINING_CANDIDATES + ("ckpt_io", "accel"))
    args = parser.parse_args()
    # Answers go to the original stdout pipe; everything printed (controllers' logs) goes to the log (stderr).
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    _serve(args.candidate, proto)


if __name__ == "__main__":
    main()
