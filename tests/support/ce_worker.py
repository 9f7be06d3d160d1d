"""A trainer or a continuous evaluator in its own process, for tests that run both at once.

    python -m tests.support.ce_worker train --model_dir=DIR --steps=40 --interval=4 ...
    python -m tests.support.ce_worker evaluate --model_dir=DIR --poll=0.2 ...

The evaluator prints one JSON line `STATS {...}` (its ContinuousEvalStats, without the output) before it exits.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import tfpipe.controller_core as orbit  # noqa: E402
from tests.support.tiny_runners import TinyRunner  # noqa: E402


class SlowRunner(TinyRunner):
    """Sleeps after each train loop and each evaluation, to set the pace of checkpoints."""

    def __init__(self, train_sleep: float, eval_sleep: float) -> None:
        super().__init__(eval_sleep=eval_sleep)
        self.train_sleep = train_sleep

    def train_loop_end(self):
        time.sleep(self.train_sleep)
        return super().train_loop_end()


def main(argv: list) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "evaluate"])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--interval", type=int, default=4)
    parser.add_argument("--steps_per_loop", type=int, default=2)
    parser.add_argument("--max_to_keep", type=int, default=0)
    parser.add_argument("--train_sleep", type=float, default=0.0)
    parser.add_argument("--eval_sleep", type=float, default=0.0)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--idle_timeout", type=float, default=None)
    parser.add_argument("--policy", default="all")
    parser.add_argument("--best_metric", default="eval_loss")
    args = parser.parse_args(argv)

    runner = SlowRunner(args.train_sleep, args.eval_sleep)
    manager = tf.train.CheckpointManager(
        runner.checkpoint(), args.model_dir, max_to_keep=args.max_to_keep or None,
        step_counter=runner.global_step, checkpoint_interval=args.interval,
    )
    if args.mode == "train":
        controller = orbit.Controller(global_step=runner.global_step, trainer=runner,
                                      steps_per_loop=args.steps_per_loop, checkpoint_manager=manager)
        controller.train(args.steps)
        return 0
    controller = orbit.Controller(global_step=runner.global_step, evaluator=runner, checkpoint_manager=manager,
                                  eval_summary_dir=f"{args.model_dir}/eval/validation")
    evaluator = orbit.continuous_eval.ContinuousEvaluator(
        controller, policy=args.policy, poll_interval=args.poll, idle_timeout=args.idle_timeout,
        best_metric=args.best_metric, best_mode="lower",
    )
    stats = None
    try:
        stats = evaluator.run(steps=2)
    except orbit.continuous_eval.IdleTimeoutError as error:
        stats = error.stats
        raise
    finally:
        if stats is not None:
            fields = {k: v for k, v in dataclasses.asdict(stats).items() if k != "output"}
            print("STATS " + json.dumps({**fields, "exit_time": time.time()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
