"""The trainer and evaluator processes the continuous-eval latency part times: `python -m
bench.continuous_eval.children trainer|evaluator SPEC`, answering in JSON lines on stdout."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.continuous_eval.settings import CONTROLLER_CANDIDATES



def _build(tf: Any, tf_keras: Any) -> Tuple[Any, Any]:
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(64,)),
        tf_keras.layers.Dense(32, activation="relu"),
        tf_keras.layers.Dense(10),
    ])
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    return model, step


def _data(tf: Any, rows: int) -> Tuple[Any, Any]:
    x = tf.random.stateless_uniform([rows, 64], seed=[1, 2])
    y = tf.random.stateless_uniform([rows], seed=[3, 4], maxval=10, dtype=tf.int64)
    return x, y


def _child_trainer(spec: Dict[str, Any], proto: Any) -> None:
    import tensorflow as tf
    import tf_keras

    from tfpipe import controller_core
    model, step = _build(tf, tf_keras)
    optimizer = tf_keras.optimizers.Adam(1e-3)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = _data(tf, 64)

    @tf.function
    def train_step() -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        step.assign_add(1)
        return loss

    class Trainer(controller_core.AbstractTrainer):
        sleep_s = 0.5

        def train(self, num_steps: Any) -> Dict[str, Any]:
            loss = None
            for _ in range(int(num_steps)):
                time.sleep(self.sleep_s)  # The checkpoint cadence: ~sleep_s between saves.
                loss = train_step()
            return {"loss": loss}

    trainer = Trainer()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    train_step()  # Warm-up: trace the step, create the optimizer's slots, and save once.
    tf.train.CheckpointManager(checkpoint, spec["warm_dir"], max_to_keep=1).save()
    proto.write(json.dumps({"ok": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            step.assign(0)
            trainer.sleep_s = float(request["interval_s"])
            manager = tf.train.CheckpointManager(checkpoint, request["model_dir"], max_to_keep=None,
                                                 step_counter=step, checkpoint_interval=1)
            landed: List[Tuple[int, float]] = []
            save_s: List[float] = []
            original_save = manager.save

            def save(*args: Any, _original: Any = original_save, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                path = _original(*args, **kwargs)
                landed.append((int(step.numpy()), time.time()))  # The checkpoint has landed.
                save_s.append(time.perf_counter() - t0)
                return path

            manager.save = save
            controller = controller_core.Controller(global_step=step, trainer=trainer, steps_per_loop=1,
                                                    checkpoint_manager=manager)
            controller.train(int(request["checkpoints"]))  # Saves every step, then writes training_complete.json.
            done = time.time()
            answer = {"ok": True, "landed": landed, "done": done, "save_s": save_s}
        except Exception as error:  # Report, keep serving.
            import traceback

            answer = {"ok": False, "error": f"{type(error).__name__}: {error}\n{traceback.format_exc()[-2000:]}"}
        proto.write(json.dumps(answer) + "\n")


def _child_evaluator(spec: Dict[str, Any], proto: Any) -> None:
    import tensorflow as tf
    import tf_keras

    candidate = spec["candidate"]
    model, step = _build(tf, tf_keras)
    x, y = _data(tf, 256)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    eval_sleep_s = float(spec["eval_sleep_s"])
    entered: List[Tuple[int, float]] = []
    first_seen: Dict[int, float] = {}
    polls = {"n": 0, "s": 0.0}
    timings: Dict[str, List[float]] = {"restore_s": [], "marker_read_s": [], "record_write_s": []}

    def timed(key: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[key].append(time.perf_counter() - t0)

        return wrapper

    @tf.function
    def eval_fn() -> Any:
        return loss_fn(y, model(x, training=False))

    from tfpipe import controller_core
    class Evaluator(controller_core.AbstractEvaluator):
        def evaluate(self, num_steps: Any) -> Dict[str, Any]:
            entered.append((int(step.numpy()), time.time()))  # Evaluation starts (the step is restored by now).
            loss = eval_fn()
            if eval_sleep_s:
                time.sleep(eval_sleep_s)
            return {"loss": loss}

    evaluator = Evaluator()
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    # Warm-up, outside the measurement: trace the evaluation, save and restore one scratch checkpoint.
    eval_fn()
    warm = tf.train.Checkpoint(model=model, step=step).write(os.path.join(spec["warm_dir"], "warm"))
    checkpoint.restore(warm).expect_partial()
    step.assign(0)
    model_dir = spec["model_dir"]

    def record_seen(found: Sequence[int], now: float) -> None:
        for s in found:
            first_seen.setdefault(int(s), now)

    if candidate in CONTROLLER_CANDIDATES:
        from tfpipe.controller_core import checkpoint_watcher

        original_list = checkpoint_watcher.list_checkpoints

        def list_checkpoints(directory: str, name: str = "ckpt") -> Dict[int, str]:
            t0 = time.perf_counter()
            found = original_list(directory, name)
            now = time.time()
            polls["n"] += 1
            polls["s"] += time.perf_counter() - t0
            record_seen(list(found), now)
            return found

        checkpoint_watcher.list_checkpoints = list_checkpoints  # Controller calls it through the module.
        from tfpipe.controller_core import eval_records, restore, run_dir

        restore.restore_checked = timed("restore_s", restore.restore_checked)
        eval_records.EvalRecords.write = timed("record_write_s", eval_records.EvalRecords.write)
        original_read_json = run_dir.read_json

        def read_json(path: str) -> Any:
            if not path.endswith(run_dir.TRAINING_COMPLETE):
                return original_read_json(path)
            return timed("marker_read_s", original_read_json)(path)

        run_dir.read_json = read_json
        manager = tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=None)
        controller = controller_core.Controller(global_step=step, evaluator=evaluator, checkpoint_manager=manager)
        proto.write(json.dumps({"ok": True}) + "\n")
        sys.stdin.readline()  # "go"
        go, cpu0 = time.time(), time.process_time()
        controller.evaluate_continuously(steps=-1, policy="all", poll_interval=float(spec["poll_s"]),
                                         idle_timeout=120.0)
        stop_reason = controller.last_continuous_eval.stop_reason
    else:
        from tensorflow.python.checkpoint import checkpoint_management

        original_latest = checkpoint_management.latest_checkpoint

        def latest_checkpoint(checkpoint_dir: str, latest_filename: Optional[str] = None) -> Optional[str]:
            t0 = time.perf_counter()
            path = original_latest(checkpoint_dir, latest_filename)
            now = time.time()
            polls["n"] += 1
            polls["s"] += time.perf_counter() - t0
            if path is not None and path.rsplit("-", 1)[-1].isdigit():
                record_seen([int(path.rsplit("-", 1)[-1])], now)
            return path

        checkpoint_management.latest_checkpoint = latest_checkpoint  # checkpoints_iterator calls it so.
        train_steps = int(spec["train_steps"])
        restored = {"step": 0}

        def timeout_fn() -> bool:  # Model Garden (official/core/train_lib.py): stop once training's end is restored.
            return restored["step"] >= train_steps

        proto.write(json.dumps({"ok": True}) + "\n")
        sys.stdin.readline()  # "go"
        go, cpu0 = time.time(), time.process_time()
        deadline = time.monotonic() + 300
        stop_reason = "timeout_fn: final step restored"
        for path in tf.train.checkpoints_iterator(model_dir, timeout=float(spec["timeout_s"]), timeout_fn=timeout_fn):
            t0 = time.perf_counter()
            checkpoint.restore(path).expect_partial()  # What orbit.Controller.restore_checkpoint does.
            timings["restore_s"].append(time.perf_counter() - t0)
            restored["step"] = int(step.numpy())
            evaluator.evaluate(tf.convert_to_tensor(-1, dtype=tf.int32))
            if time.monotonic() > deadline:
                stop_reason = "safety deadline"
                break
    loop_end, cpu = time.time(), time.process_time() - cpu0
    proto.write(json.dumps({
        "ok": True, "candidate": candidate, "go": go, "loop_end": loop_end, "watch_cpu_s": cpu,
        "evaluate_entered": entered, "first_seen": sorted(first_seen.items()), "polls": polls["n"],
        "poll_time_s": polls["s"], "stop_reason": stop_reason, **timings,
        "gcs_stat_cache_max_age": os.environ.get("GCS_STAT_CACHE_MAX_AGE"),
    }) + "\n")
    proto.flush()


def _child_main(argv: Sequence[str]) -> int:
    """``trainer|evaluator SPEC``: answers go to the original stdout, everything printed to stderr."""
    role, spec = argv[1], json.loads(argv[2])
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        if role == "trainer":
            _child_trainer(spec, proto)
        else:
            _child_evaluator(spec, proto)
    except Exception as error:
        import traceback

        traceback.print_exc()
        proto.write(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv))
