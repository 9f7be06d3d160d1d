"""The built-in `model_garden` task: a TensorFlow Model Garden experiment, trained by its own trainer on tfpipe.

Needs the `model-garden` extra (`pip install 'tfpipe[model-garden]'`, which brings
`tf-models-official` and with it TensorFlow 2.20). Its `task_config`::

    {"experiment": "resnet_imagenet",                  # a registered experiment, as train.py's --experiment
     "config_file": "gs://bucket/exp.yaml",            # optional, a URI or a list: --config_file, in order
     "params_override": {"task": {...}, "trainer": {...}}}  # optional, a dict or a YAML/JSON string: --params_override

The experiment resolves as Model Garden's `train.py` resolves it: every experiment
that `official.common.registry_imports` registers, overridden by the config files and
then by `params_override` (strictly: an unknown key is an error), then validated.
Model Garden's `import orbit` is tfpipe's `controller_core` (`alias_orbit`), so the
experiment's own task and `official.core.base_trainer.Trainer` (an Orbit
`StandardTrainer` and `StandardEvaluator`) run on tfpipe's controller, with Model
Garden's checkpoint layout (`global_step`, `model`, `optimizer` and the model's
`checkpoint_items`), so its checkpoints and tfpipe's are interchangeable.

What comes from where:

* tfpipe's inputs run the loop: `train_steps`, `steps_per_loop`, `checkpoint_interval`,
  `max_to_keep`, `eval_steps`, `distribution_strategy`; the experiment's `trainer`
  section values for these are not used. An evaluation with `eval_steps` -1 runs the
  experiment's `trainer.validation_steps` (its whole validation data when that is -1).
* The experiment decides the model, data, optimizer, losses and metrics, its mixed
  precision (`runtime.mixed_precision_dtype`), and the best checkpoint: by
  `trainer.best_checkpoint_eval_metric` (nested keys `a|b` become `a/b`) and
  `trainer.best_checkpoint_metric_comp`; `validation_loss` (lower) when it names none.
* Data: the step's data artifacts (`train_data`, `eval_data`), when given, replace the
  experiment's `task.train_data.input_path` and `task.validation_data.input_path`
  (`data_paths_override`; a folder means every file in it).
* The training loss is Model Garden's `training_loss` (what the divergence check reads);
  summaries carry Model Garden's names.
* Training writes the experiment's `params.yaml` into the run directory, as train.py
  does, and warm-starts from `task.init_checkpoint` (`init_checkpoint_modules`) when
  the run has no checkpoint yet (the trainer's `initialize`).
* Export goes through the experiment's serving module where Model Garden has one that
  tfpipe wires (`official.vision.serving`: image classification, signature
  `serving_default` taking uint8 images `inputs` [batch, height, width, 3]); any other
  experiment's export is refused in one line naming it.

Resume: a resumed run restores the weights, the optimizer, the global step and the
model's checkpoint items exactly. The training input pipeline is not checkpointed (as
in Model Garden: its pipelines hold stateful random ops, e.g. the classification
crop, whose iterators cannot be saved, and shuffle buffers that would go into every
checkpoint): it starts again from the beginning of its data, so the batches after a
resume differ from an uninterrupted run's. The global seed (Python, NumPy, TensorFlow)
is the experiment's `task.train_data.seed` (0 when unset): tfpipe's `deterministic`
(the default) enables op determinism, which needs a seed for the pipelines' random ops.
"""

import dataclasses
import importlib
import inspect
import json
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import tensorflow as tf
import tf_keras

import tfpipe.controller_core as controller_core
from tfpipe import checks
from tfpipe.components.tasks import task_factory
from tfpipe.components.tasks.base import Task
from tfpipe.components.tasks.config import config_from_dict

NAME = "model_garden"
EXTRA = "model-garden"
# The trainer's loss in its output (official.core.base_trainer.Trainer.train_loop_end).
TRAINING_LOSS = "training_loss"
DEFAULT_BEST = ("validation_loss", "lower")
_ORBIT_SUBMODULES = ("actions", "controller", "runner", "standard_runner", "utils")


@dataclasses.dataclass
class ModelGardenConfig:
    """Config of the `model_garden` task.

    Attributes:
        experiment: A registered Model Garden experiment (required), e.g. `resnet_imagenet`.
        config_file: YAML config files (URIs), applied in order over the experiment, as `--config_file`.
        params_override: Applied last, as `--params_override`: a dict, or a YAML/JSON string.
    """

    experiment: str = ""
    config_file: Union[str, List[str], None] = None
    params_override: Union[dict, str, None] = None

    def validate(self) -> None:
        if not self.experiment.strip():
            raise checks.InputError(
                "`task_config['experiment']` is required for task 'model_garden': the name of a registered Model "
                "Garden experiment, e.g. 'resnet_imagenet'.")
        for uri in self.config_files:
            checks.check_uri("task_config['config_file']", uri)

    @property
    def config_files(self) -> List[str]:
        if self.config_file is None:
            return []
        return [self.config_file] if isinstance(self.config_file, str) else list(self.config_file)


def alias_orbit() -> None:
    """Makes `import orbit` (how Model Garden imports Orbit) import `tfpipe.controller_core`.

    Raises:
        RuntimeError: If Model Garden's own `orbit` was imported first in this process: its trainers would then
            not run on controller_core.
    """
    current = sys.modules.get("orbit")
    if current is controller_core:
        return
    if current is not None:
        raise RuntimeError(
            f"task {NAME!r} runs Model Garden on tfpipe.controller_core, but this process already imported another "
            f"`orbit` ({getattr(current, '__file__', current)}); import tfpipe's model_garden task before "
            "`official` or `orbit`.")
    sys.modules["orbit"] = controller_core
    for name in _ORBIT_SUBMODULES:
        sys.modules[f"orbit.{name}"] = importlib.import_module(f"tfpipe.controller_core.{name}")


def _import_model_garden() -> Dict[str, Any]:
    """Model Garden's modules, `orbit` aliased first; every experiment registered as train.py registers them."""
    alias_orbit()
    checks.import_extra("official.common.registry_imports", extra=EXTRA, needed_for=f"task {NAME!r}")
    names = ("official.core.exp_factory", "official.core.task_factory", "official.core.train_utils",
             "official.modeling.performance")
    return {name.rsplit(".", 1)[-1]: importlib.import_module(name) for name in names}


def parse_experiment(config: ModelGardenConfig, data: Any = None) -> Tuple[Any, Dict[str, Any]]:
    """The experiment's `ExperimentConfig` and the effective task config a run records.

    The config is the registered experiment, then the config files, then `params_override` (as train.py
    builds it), then the data artifacts' paths (`data_paths_override`), validated and locked. The effective
    config is `{"experiment": ..., "params.<key>": value, ...}` before the data paths: the run records the
    data's content, not where one run found it.

    Raises:
        checks.InputError: For an unknown experiment, an override key the experiment lacks, or a config
            Model Garden's validation refuses; naming the `task_config` key.
    """
    mg = _import_model_garden()
    override = config.params_override
    options = mg["train_utils"].ParseConfigOptions(
        experiment=config.experiment, config_file=config.config_files,
        params_override=override if override is not None else "")
    try:
        mg["exp_factory"].get_exp_config(config.experiment)
    except LookupError:
        raise checks.InputError(
            f"`task_config['experiment']` ({checks.shown(config.experiment)}) is not a registered Model Garden "
            "experiment (those official.common.registry_imports registers, e.g. 'resnet_imagenet', "
            "'retinanet_resnetfpn_coco', 'mock').") from None
    try:
        params = mg["train_utils"].ExperimentParser(options).parse()
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        where = "params_override" if override else "config_file"
        raise checks.InputError(
            f"`task_config['{where}']` does not fit experiment {config.experiment!r}: "
            f"{checks.clipped(str(error).strip(chr(34)))}") from None
    except tf.errors.NotFoundError as error:
        raise checks.InputError(f"`task_config['config_file']`: {error.message}") from None
    effective = {"experiment": config.experiment, **_flat(params.as_dict(), "params.")}
    params.override(data_paths_override(data), is_strict=True)
    try:
        params.validate()
    except (KeyError, ValueError) as error:
        raise checks.InputError(
            f"experiment {config.experiment!r} with this `task_config` is not valid: {error}") from None
    params.lock()
    return params, effective


def data_paths_override(data: Any) -> Dict[str, Any]:
    """The `params_override` that points the experiment at the step's data artifacts (`train_data`, `eval_data`).

    The one place that maps tfpipe's data channel (`data.train`, `data.eval`: references whose `uri` is a
    folder, a file or a glob) to Model Garden's `task.train_data.input_path` and
    `task.validation_data.input_path`: a folder becomes every file in it. Without data artifacts, give the
    paths in `params_override`.
    """
    override: Dict[str, Any] = {}
    for attr, key in (("train", "train_data"), ("eval", "validation_data")):
        ref = getattr(data, attr, None) if data is not None else None
        if ref is not None:
            uri = ref.uri.rstrip("/")
            override[key] = {"input_path": f"{uri}/*" if tf.io.gfile.isdir(uri) else uri}
    return {"task": override} if override else {}


def _flat(values: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested config as `{"a.b.c": value}` (JSON values), so that a difference names its key."""
    out: Dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = json.loads(json.dumps(value, default=str))
    return out


def _best(params: Any) -> Tuple[str, str]:
    metric = params.trainer.best_checkpoint_eval_metric
    if not metric:
        return DEFAULT_BEST
    comp = params.trainer.best_checkpoint_metric_comp
    checks.check_choice("params.trainer.best_checkpoint_metric_comp", comp, checks.BEST_MODES)
    return metric.replace("|", "/"), comp


def _dataset_fn(mg_task: Any, data_config: Any, steps: int) -> Any:
    """`fn(input_context)` of the task's input pipeline for `data_config`, `steps` batches at most when > 0."""
    takes_context = "input_context" in inspect.signature(mg_task.build_inputs).parameters

    def dataset_fn(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        dataset = (mg_task.build_inputs(data_config, input_context=input_context) if takes_context
                   else mg_task.build_inputs(data_config))
        return dataset.take(steps) if steps > 0 else dataset

    return dataset_fn


def _serving(experiment: str, params: Any, model: Any) -> Tuple[Optional[Any], Optional[Any], str]:
    """The experiment's serving signature, a sample of its inputs, or why it has none."""
    vision_configs = importlib.import_module("official.vision.configs.image_classification")
    if not isinstance(params.task, vision_configs.ImageClassificationTask):
        return None, None, (
            f"task {NAME!r}: experiment {experiment!r} ({type(params.task).__name__}) has no Model Garden serving "
            "module that tfpipe exports (official.vision.serving: image classification); nothing was exported.")
    serving = importlib.import_module("official.vision.serving.image_classification")
    size = list(params.task.model.input_size[:2])
    module = serving.ClassificationModule(params, batch_size=None, input_image_size=size, model=model)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="inputs")])
    def serve(inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
        return module.serve(inputs)

    def sample() -> tf.Tensor:
        return tf.cast(tf.random.stateless_uniform([2, *size, 3], seed=[1, 2], maxval=256, dtype=tf.int32), tf.uint8)

    return serve, sample, ""


@task_factory
def build(config_dict: Dict[str, Any], *, data: Any = None) -> Task:
    """The `model_garden` task factory: call it inside the strategy's scope.

    Args:
        config_dict: Keys of `ModelGardenConfig`.
        data: The step's data artifacts (tfpipe's data channel: `data.train`, `data.eval`, each None or a
            reference with a `uri`): the experiment reads them instead of its own input paths.

    Returns:
        The task, with Model Garden's trainer as its trainer and evaluator.
    """
    config = config_from_dict(ModelGardenConfig, config_dict, task=NAME)
    params, effective = parse_experiment(config, data)
    mg = _import_model_garden()
    tf_keras.utils.set_random_seed(params.task.train_data.seed or 0)  # Op determinism needs it for random ops.
    if params.runtime.mixed_precision_dtype:
        mg["performance"].set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    mg_task = mg["task_factory"].get_task(params.task)
    strategy = tf.distribute.get_strategy()
    model = mg_task.build_model()
    validation_steps = params.trainer.validation_steps
    trainer = importlib.import_module("official.core.base_trainer").Trainer(
        params, mg_task, model=model, optimizer=mg["train_utils"].create_optimizer(mg_task, params),
        train_dataset=controller_core.utils.make_distributed_dataset(
            strategy, _dataset_fn(mg_task, params.task.train_data, 0)),
        validation_dataset=controller_core.utils.make_distributed_dataset(
            strategy, _dataset_fn(mg_task, params.task.validation_data, validation_steps)),
    )
    serve, sample, no_serving = _serving(config.experiment, params, trainer.model)
    best_metric, best_mode = _best(params)
    return Task(
        name=NAME,
        model=trainer.model,
        optimizer=trainer.optimizer,
        trainer=trainer,
        evaluator=trainer,
        global_step=trainer.global_step,
        checkpoint_items={"global_step": trainer.global_step, **getattr(trainer.model, "checkpoint_items", {})},
        best_metric=best_metric,
        best_mode=best_mode,
        serving_signature=serve,
        serving_inputs=sample,
        no_serving_reason=no_serving,
        loss_name=TRAINING_LOSS,
        init_fn=trainer.initialize,
        checkpoint_train_iterator=False,
        write_run_files=lambda model_dir: mg["train_utils"].serialize_config(params, model_dir),
        config=effective,
        eval_only_config_keys=[k for k in effective if k.startswith("params.task.validation_data.")]
        + ["params.trainer.validation_steps"],
    )
