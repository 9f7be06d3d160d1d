"""Keras 3 objects where TensorFlow training code expects Keras 2 (`tf_keras`): named, with the fix.

On TensorFlow 2.16 and later `tf.keras` is Keras 3 unless `TF_USE_LEGACY_KERAS=1` is set before TensorFlow is
imported. Keras 3 variables are not `tf.Variable`s and its models and optimizers do not track TensorFlow state the
way Orbit-style training code (and `tf.train.Checkpoint`) expects, so code written for Orbit with `tf.keras` fails
far from the cause (e.g. "`global_step` must be a `tf.Variable`, got Variable"). These helpers name the object and
the fix instead.
"""

from typing import Any, Iterable, Optional, Tuple

FIX = ("tfpipe trains with Keras 2 (`tf_keras`): build it with `import tf_keras` (`tf_keras.Model`, "
       "`tf_keras.optimizers`, `tf.Variable`) instead of `keras`/`tf.keras`, or set TF_USE_LEGACY_KERAS=1 in the "
       "environment before TensorFlow is imported (the tfpipe image sets it)")


def is_keras3(value: Any) -> bool:
    """Whether `value` is an object of Keras 3 (its class is defined in the `keras` package, not `tf_keras`)."""
    module = getattr(type(value), "__module__", "") or ""
    return module == "keras" or module.startswith("keras.")


def describe(name: str, value: Any) -> str:
    """One sentence naming `name` as a Keras 3 object of its class, and the fix."""
    cls = type(value)
    return f"`{name}` is a Keras 3 object ({cls.__module__}.{cls.__qualname__}): {FIX}."


def first_keras3(items: Iterable[Tuple[str, Any]]) -> Optional[Tuple[str, Any]]:
    """The first `(name, value)` of `items` whose value is a Keras 3 object, or None."""
    for name, value in items:
        if value is not None and is_keras3(value):
            return name, value
    return None
