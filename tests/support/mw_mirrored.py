"""Trains `digits` under MirroredStrategy over two logical CPU devices, and under the default strategy.

    python -m tests.support.mw_mirrored OUT_DIR TRAIN_STEPS

Logical devices must be configured before TensorFlow initialises its devices, hence a process of its
own. Writes `OUT_DIR/mirrored` and `OUT_DIR/default` (run directories) and prints one JSON line
`RESULT {...}` with the replica count the `mirrored` strategy got and both train results.
"""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def main(argv: list) -> int:
    out_dir, train_steps = argv[1], int(argv[2])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from tfpipe.components.common import strategy as strategy_lib
    from tfpipe.components.train import runtime as train
    from tests.support.mw_cluster import DIGITS_CONFIG

    result = {"replicas": strategy_lib.create_strategy("mirrored").num_replicas_in_sync}
    for strategy in ("mirrored", "default"):
        trained = train.run(
            task="digits", task_config=DIGITS_CONFIG, model_dir=os.path.join(out_dir, strategy),
            train_steps=train_steps, steps_per_loop=50, checkpoint_interval=50, max_to_keep=10, distribution_strategy=strategy,
        )
        result[strategy] = dataclasses.asdict(trained)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
