"""Small image-classification data in Model Garden's tf.Example format, and a tiny `resnet_imagenet` override."""

import io
import os
from typing import Any, Dict

import numpy as np
import tensorflow as tf
from PIL import Image

NUM_CLASSES = 4
IMAGE_SIZE = 32
# Each class a colour: a tiny ResNet tells them apart within a few dozen steps.
_COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40]], np.float32)


def write_image_tfrecords(path: str, count: int, seed: int) -> None:
    """Writes `count` JPEG tf.Examples (`image/encoded`, `image/class/label`) of 32x32 noisy class colours."""
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            label = i % NUM_CLASSES
            pixels = _COLOURS[label] + rng.normal(0, 30, (IMAGE_SIZE, IMAGE_SIZE, 3))
            buffer = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG")
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }))
            writer.write(example.SerializeToString())


def tiny_resnet_config(data_dir: str) -> Dict[str, Any]:
    """`task_config` of `resnet_imagenet` shrunk to ResNet-10 at 0.25 depth, 32x32 inputs, 4 classes, on CPU.

    Writes 64 training and 32 validation examples under `data_dir`.
    """
    os.makedirs(data_dir, exist_ok=True)
    write_image_tfrecords(f"{data_dir}/train-00000.tfrecord", 64, seed=1)
    write_image_tfrecords(f"{data_dir}/valid-00000.tfrecord", 32, seed=2)
    data = {"global_batch_size": 8, "dtype": "float32", "shuffle_buffer_size": 16}
    return {
        "experiment": "resnet_imagenet",
        "params_override": {
            "runtime": {"enable_xla": False, "mixed_precision_dtype": "float32"},
            "task": {
                "model": {"num_classes": NUM_CLASSES, "input_size": [IMAGE_SIZE, IMAGE_SIZE, 3],
                          "backbone": {"type": "resnet", "resnet": {"model_id": 10, "depth_multiplier": 0.25}}},
                "evaluation": {"top_k": 2},
                "train_data": {"input_path": f"{data_dir}/train-*", **data},
                "validation_data": {"input_path": f"{data_dir}/valid-*", "drop_remainder": False, **data},
            },
            "trainer": {
                "best_checkpoint_eval_metric": "accuracy", "best_checkpoint_metric_comp": "higher",
                "validation_steps": -1,
                "optimizer_config": {
                    "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}},
                    "learning_rate": {"type": "constant", "constant": {"learning_rate": 0.05}},
                    "warmup": {"type": None},
                },
            },
        },
    }
