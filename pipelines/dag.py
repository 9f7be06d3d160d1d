"""Your own KFP DAG from tfpipe's components, with what the packaged pipeline gives its steps.

The packaged pipeline (`tfpipe.pipelines.train_eval_export`) is built from these functions; a DAG of your own
gets the same from them::

    from kfp import dsl
    from tfpipe.components import load_component
    from tfpipe.pipelines import dag

    IMAGE = "us-docker.pkg.dev/my-project/ml/tfpipe:0.1.0"
    train = dag.with_resources(load_component("train", image=IMAGE), "gpu=l4:1,spot", backend="gke")
    continuous_eval = load_component("continuous_eval", image=IMAGE)

    @dsl.pipeline(name="my-training")
    def my_training(model_dir: str):
        pair = dag.train_and_evaluate(train, continuous_eval, train_args=dict(task="digits", model_dir=model_dir),
                                      eval_args=dict(task="digits", model_dir=model_dir))
        ... pair.evaluator.outputs["passed"] ...

* `with_resources(component, "gpu=l4:1,spot", backend=...)`: a resource profile (the strings `tfpipe compile
  --train-resources` takes) on any task, for GKE (Kubernetes resources, node selectors, tolerations) or Vertex
  (accelerator settings; TPUs, spot, replicas and machine types through GCPC's custom-job route, extra
  `tfpipe[vertex-custom-job]`).
* `configure(task, step)`: the step's caching and retry policy (`SETTINGS`, declared once in
  `tfpipe.components.step_settings`).
* `run_dir(model_dir_op, model_dir)` and `check_inputs(check_op, **inputs)`: the packaged pipeline's first two
  steps (load them with `load_component("model_dir")`, `load_component("check_inputs")`).
* `train_and_evaluate(...)`: train ∥ continuous-eval, concurrent on a cluster, never stuck under kfp.local.

Why `train_and_evaluate` has a catch-up evaluator: on a cluster train and continuous_eval run together (no edge
between them; the evaluator watches `model_dir` while train writes it). kfp.local runs tasks one at a time, in any
order that respects the edges: an evaluator that starts first would wait `idle_timeout` (an hour) for a trainer
that starts only after it. A DAG cannot know at compile time where it will run, so the pair is built to be right
in both places: the concurrent evaluator gets a bounded `start_timeout` — when no checkpoint came and no trainer
holds `model_dir` by then, it stops without failing — and a catch-up evaluator after both (same `eval_name`: it
skips every checkpoint already recorded) finishes the work and gives the pair's outputs. On a cluster the catch-up
finds everything evaluated and ends within a task start; under kfp.local whichever order was drawn, every
checkpoint is evaluated once. The price: one more (short) evaluator task per run, and where train starts later than
`start_timeout` (a node pool scaling up), evaluation runs after training instead of beside it. A builder that knows
its backend (the packaged pipeline does) passes it: `backend="local"` puts the evaluator after train, `gke`/`vertex`
keep the two concurrent with no catch-up.

Importing this module imports neither TensorFlow nor the components' runtime.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

from kfp import dsl
from kfp.dsl import pipeline_channel

from tfpipe.components.step_settings import RETRIES_ENV, SETTINGS, RetryPolicy, StepSettings
from tfpipe.pipelines import backends, vertex
from tfpipe.pipelines.profiles import ResourceProfile, parse_profile

BACKENDS = ("gke", "vertex")
# The concurrent evaluator's bounded wait for training to start, when the backend is not known.
DEFAULT_START_TIMEOUT_S = 300.0

__all__ = [
    "DEFAULT_START_TIMEOUT_S",
    "RETRIES_ENV",
    "SETTINGS",
    "RetryPolicy",
    "StepSettings",
    "TrainAndEvaluate",
    "check_inputs",
    "configure",
    "needs_custom_job",
    "run_dir",
    "train_and_evaluate",
    "with_resources",
]


def configure(task: dsl.PipelineTask, step: str, *, retries: Optional[int] = None) -> dsl.PipelineTask:
    """Applies step `step`'s caching and retry policy (`SETTINGS[step]`) to `task`.

    A retried step also gets `$TFPIPE_RETRIES` (the policy's count), so that it can say "retrying (n/N)".

    Args:
        task: The task.
        step: A key of `SETTINGS`: `model_dir`, `check_inputs`, `train`, `continuous_eval`.
        retries: Another retry count than the policy's (0: none).

    Returns:
        `task`, for chaining.

    Raises:
        ValueError: For an unknown step or a negative `retries`.
    """
    if step not in SETTINGS:
        raise ValueError(f"`step` must be one of {sorted(SETTINGS)}, got {step!r}.")
    settings = SETTINGS[step]
    if settings.caching is not None:
        task.set_caching_options(settings.caching)
    policy = settings.retry
    if policy is not None and retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"`retries` must be an integer >= 0, got {retries!r}.")
        policy = dataclasses.replace(policy, num_retries=retries)
    if policy is not None and policy.num_retries:
        task.set_retry(num_retries=policy.num_retries, backoff_duration=policy.backoff_duration,
                       backoff_factor=policy.backoff_factor, backoff_max_duration=policy.backoff_max_duration)
        task.set_env_variable(RETRIES_ENV, str(policy.num_retries))
    return task


def needs_custom_job(profile: ResourceProfile, *, backend: str, replica_count: int = 1) -> bool:
    """Whether `profile` takes Vertex's custom-job route: TPUs, spot or several replicas on `vertex`."""
    return backend == "vertex" and (profile.tpu is not None or profile.spot or replica_count > 1)


def with_resources(component: Callable[..., Any], resources: Any, *, backend: str, step: str = "task",
                   replica_count: int = 1, custom_job: bool = False,
                   **custom_job_options: Any) -> Callable[..., Any]:
    """`component` with a resource profile for `backend`: call the result as you would call the component.

    Args:
        component: A KFP component (e.g. `load_component("train", image=...)`).
        resources: A profile: a spec string such as `"cpu=8,memory=32G,gpu=l4:1,spot"` or
            `"tpu=v5e:2x2"` (what `tfpipe compile --train-resources` accepts), a mapping, or a `ResourceProfile`.
        backend: `gke` (Kubernetes resources, node selectors and tolerations on each task) or `vertex` (accelerator
            settings on each task; TPUs, spot, `replica_count` > 1 and `custom_job` through GCPC's
            `create_custom_training_job_from_component`).
        step: The step's name in error messages.
        replica_count: Vertex: machines of the custom job (each runs the component).
        custom_job: Vertex: take the custom-job route even for a profile the task setters could give.
        **custom_job_options: Vertex custom jobs: other GCPC options (`base_output_directory`, `tensorboard`,
            `service_account`, `restart_job_on_worker_restart`, ...).

    Returns:
        A callable that creates the task (a GCPC custom-job component on the custom-job route).

    Raises:
        ResourceProfileError: For a profile the backend cannot give, before anything is compiled.
        ValueError: For an unknown backend, or custom-job options without the custom-job route.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}.")
    profile = resources if isinstance(resources, ResourceProfile) else parse_profile(resources, step=step)
    route = custom_job or needs_custom_job(profile, backend=backend, replica_count=replica_count)
    if route and backend == "vertex":
        backends.validate_for_backend(profile, backend=backend, custom_job=True)
        # Every custom job runs as the run's service account, like the other steps (unless told otherwise).
        options = {"service_account": vertex.SERVICE_ACCOUNT_PLACEHOLDER, **custom_job_options}
        return vertex.vertex_custom_job_component(component, profile, replica_count=replica_count, **options)
    if custom_job or replica_count != 1 or custom_job_options:
        raise ValueError(f"`replica_count`, `custom_job` and custom-job options need backend 'vertex', got backend "
                         f"{backend!r} (GKE: one pod per task; for several machines see tfpipe.components.train.tfjob).")
    backends.validate_for_backend(profile, backend=backend)

    def placed(*args: Any, **kwargs: Any) -> dsl.PipelineTask:
        return backends.apply_profile(component(*args, **kwargs), profile, backend=backend)

    placed.__name__ = getattr(component, "__name__", "placed")
    placed.__doc__ = getattr(component, "__doc__", None)
    return placed


def run_dir(model_dir_op: Callable[..., Any], model_dir: Any) -> dsl.PipelineTask:
    """The model-dir step: `model_dir`, or `<pipeline root>/<job id>/model_dir` when it is empty (`.output`).

    Args:
        model_dir_op: `load_component("model_dir", image=...)`.
        model_dir: The pipeline's `model_dir` parameter (or a string).
    """
    task = model_dir_op(model_dir=model_dir, pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
                        job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    return configure(task.set_display_name("model-dir"), "model_dir")


def check_inputs(check_op: Callable[..., Any], **inputs: Any) -> dsl.PipelineTask:
    """The check-inputs step: every input against the task and one batch through it, once, no retries.

    Make train and continuous_eval run `.after()` it (`train_and_evaluate(after=[...])`); its `best_metric` and
    `best_mode` outputs are the effective ones.

    Args:
        check_op: `load_component("check_inputs", image=...)`.
        **inputs: Its inputs (`task`, `model_dir`, `task_config`, `best_metric`, `thresholds`, ...).
    """
    return configure(check_op(**inputs).set_display_name("check-inputs"), "check_inputs")


@dataclasses.dataclass
class TrainAndEvaluate:
    """The tasks of a train ∥ continuous-eval pair.

    Attributes:
        train: The train task.
        evaluator: The task whose outputs are the pair's (best checkpoint, metrics, `passed`): the catch-up
            evaluator, or the only one when the backend was given.
        watcher: The evaluator that runs beside train (the same as `evaluator` when there is no catch-up).
    """

    train: dsl.PipelineTask
    evaluator: dsl.PipelineTask
    watcher: dsl.PipelineTask

    @property
    def outputs(self) -> Mapping[str, Any]:
        """The evaluator's outputs."""
        return self.evaluator.outputs


def train_and_evaluate(
    train: Callable[..., Any],
    continuous_eval: Callable[..., Any],
    *,
    train_args: Mapping[str, Any],
    eval_args: Mapping[str, Any],
    backend: Optional[str] = None,
    start_timeout: float = DEFAULT_START_TIMEOUT_S,
    train_retries: Optional[int] = None,
    after: Sequence[dsl.PipelineTask] = (),
    configure_task: Optional[Callable[[dsl.PipelineTask, str], dsl.PipelineTask]] = None,
) -> TrainAndEvaluate:
    """Train ∥ continuous-eval on one `model_dir`: concurrent on a cluster, never stuck under kfp.local.

    See the module docstring for the design. Both get `configure`'s settings (`train_retries` overrides train's
    retry count) and run after each of `after` (e.g. the check-inputs task).

    Args:
        train: The train component (or `with_resources(...)` of it).
        continuous_eval: The continuous_eval component (or `with_resources(...)` of it).
        train_args: The train task's arguments.
        eval_args: The evaluators' arguments (`start_timeout` is the pair's).
        backend: None (the DAG may run anywhere: a bounded watcher and a catch-up evaluator), `local` (the
            evaluator after train), or `gke`/`vertex` (concurrent, no catch-up).
        start_timeout: With `backend` None: seconds the concurrent evaluator waits for training to start (a number,
            or a pipeline parameter).
        train_retries: The train task's retries (default: `SETTINGS["train"]`).
        after: Tasks both run after.
        configure_task: `configure_task(task, step)` for more settings on each task (`step`: `train` or `eval`),
            e.g. secrets or a backend's resources.

    Returns:
        The tasks.

    Raises:
        ValueError: For an unknown backend, a `start_timeout` that is not positive, or `eval_args` holding
            `start_timeout`.
    """
    if backend not in (None, "local", *BACKENDS):
        raise ValueError(f"`backend` must be None, 'local', 'gke' or 'vertex', got {backend!r}.")
    if not isinstance(start_timeout, pipeline_channel.PipelineChannel) and (
            isinstance(start_timeout, bool) or not isinstance(start_timeout, (int, float)) or not start_timeout > 0):
        raise ValueError(f"`start_timeout` must be a positive number of seconds (or a pipeline parameter), got "
                         f"{start_timeout!r}.")
    if "start_timeout" in eval_args:
        raise ValueError("`eval_args` must not set `start_timeout`: the pair sets it (see `start_timeout`).")
    extra = configure_task or (lambda task, step: task)

    def settle(task: dsl.PipelineTask, step: str, name: str) -> dsl.PipelineTask:
        task.set_display_name(name)
        for earlier in after:
            task.after(earlier)
        return extra(task, "train" if step == "train" else "eval")

    trained = settle(configure(train(**train_args), "train", retries=train_retries), "train", "train")
    if not isinstance(start_timeout, pipeline_channel.PipelineChannel):
        start_timeout = float(start_timeout)
    bounded = {"start_timeout": start_timeout} if backend is None else {}
    watcher = settle(configure(continuous_eval(**eval_args, **bounded), "continuous_eval"), "continuous_eval",
                     "continuous-eval")
    if backend == "local":
        watcher.after(trained)  # Local tasks run one at a time: the evaluator catches up afterwards.
    if backend is not None:
        return TrainAndEvaluate(train=trained, evaluator=watcher, watcher=watcher)
    catch_up = settle(configure(continuous_eval(**eval_args), "continuous_eval"), "continuous_eval",
                      "continuous-eval-catch-up")
    catch_up.after(trained).after(watcher)
    return TrainAndEvaluate(train=trained, evaluator=catch_up, watcher=watcher)
