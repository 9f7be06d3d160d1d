"""The train ∥ continuous-eval → gated export pipeline, for a backend, an image and resource profiles.

    train ──────────────┐
                        ├─> gate (thresholds; baseline via dsl.importer) ─> export ─> [evaluate]
    continuous_eval ────┘

train and continuous_eval start together on one `model_dir` (a string, so both see it
while they run); export runs after both, only when the best checkpoint passes the
thresholds and, given a baseline model URI, beats the baseline's recorded metric.
"""

import json
import os
import re
from typing import Mapping, Optional

from kfp import dsl
from kfp import kubernetes
from kfp.dsl import Input, Metrics, Model

from tfpipe.components import kfp_components
from tfpipe import __version__, checks
from tfpipe.pipelines import multi_worker
from tfpipe.pipelines import resources

BACKENDS = ("local", "gke", "vertex")
STEPS = ("train", "eval", "export")
PIPELINE_NAME = "tfpipe-train-eval-export"


def resolve_model_dir(model_dir: str, pipeline_root: str, job_id: str) -> str:
    """Returns `model_dir`, or `<pipeline_root>/<job_id>/model_dir` when it is empty."""
    if model_dir:
        return model_dir.rstrip("/")
    return f"{pipeline_root.rstrip('/')}/{job_id}/model_dir"


def beats_baseline(
    candidate: Input[Metrics],
    baseline: Input[Model],
    metric: str,
    mode: str,
    thresholds_passed: bool,
) -> bool:
    """Whether the candidate passed its thresholds and beats the baseline model's recorded `metric`.

    Args:
        candidate: The best checkpoint's Metrics (from continuous_eval).
        baseline: A model exported by tfpipe earlier (imported by URI); its
            `tfpipe_export.json` holds the metrics it was exported with.
        metric: The metric to compare.
        mode: `higher` or `lower`: which values are better.
        thresholds_passed: continuous_eval's verdict on the thresholds.
    """
    import json
    import os

    if mode not in ("higher", "lower"):
        raise ValueError(f"`best_mode` must be 'higher' or 'lower', got {mode!r}.")
    info_path = os.path.join(baseline.path, "tfpipe_export.json")
    if not os.path.exists(info_path):
        raise ValueError(f"`baseline_model_uri` ({baseline.uri}) is not a tfpipe export: no tfpipe_export.json.")
    with open(info_path) as f:
        recorded = json.load(f)["metrics"]
    if metric not in recorded or metric not in candidate.metadata:
        raise ValueError(
            f"metric {metric!r} is missing: baseline has {sorted(recorded)}, candidate has {sorted(candidate.metadata)}."
        )
    new, old = float(candidate.metadata[metric]), float(recorded[metric])
    better = new > old if mode == "higher" else new < old
    print(f"gate | {metric}: candidate {new:.6g} vs baseline {old:.6g} | better: {better} | thresholds: {thresholds_passed}")
    return bool(thresholds_passed and better)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _check_secret_env(secret_env: Optional[Mapping[str, Mapping[str, str]]], backend: str) -> dict:
    """Checks `secret_env` ({secret: {key: ENV}}): Kubernetes names, environment variable names, GKE only."""
    if not secret_env:
        return {}
    if backend != "gke":
        raise ValueError(
            f"`secret_env` needs backend 'gke' (Kubernetes secrets), got backend {backend!r}; on Vertex, grant the "
            "run's service account access instead."
        )
    for name, keys in secret_env.items():
        if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
            raise ValueError(f"`secret_env` secret name {name!r} is not a Kubernetes name (lowercase, digits, '-', '.').")
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError(f"`secret_env[{name!r}]` must map secret keys to environment variables, got {keys!r}.")
        for key, env in keys.items():
            if not isinstance(key, str) or not _SECRET_KEY.fullmatch(key) or key in (".", ".."):
                raise ValueError(
                    f"`secret_env[{name!r}]` key {key!r} is not a Kubernetes secret key (letters, digits, '-', '_', '.')."
                )
            if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
                raise ValueError(f"`secret_env[{name!r}][{key!r}]` must be an environment variable name, got {env!r}.")
    return {name: dict(keys) for name, keys in secret_env.items()}


def pipeline_image(image: Optional[str], backend: str) -> str:
    """The image of every step: `image`, else `$TFPIPE_IMAGE`; on `local` else the tag `make image` builds.

    A cluster must be able to pull the image, and tfpipe publishes none: compiling
    for `gke` or `vertex` needs one named.

    Raises:
        ValueError: On `gke` or `vertex` when neither `image` nor `$TFPIPE_IMAGE` is given, or for a malformed
            reference.
    """
    image = image or os.environ.get("TFPIPE_IMAGE") or (kfp_components.LOCAL_IMAGE if backend == "local" else None)
    if image is None:
        ref = f"REGISTRY/tfpipe:{__version__}"
        raise ValueError(
            f"`image` is required for backend {backend!r} (none given, $TFPIPE_IMAGE not set): build the image with "
            f"`make image IMAGE={ref}`, push it where the cluster can pull it (`docker push {ref}`), and pass "
            f"`--image {ref}` (or set TFPIPE_IMAGE)."
        )
    return checks.check_image(image)


def _check_train_replicas(train_replicas: object, backend: str) -> int:
    checks.check_positive_int("train_replicas", train_replicas)
    if train_replicas > 1 and backend == "local":
        raise ValueError(
            f"`train_replicas` is {train_replicas}, but backend 'local' runs one process per step; accepted there: "
            "1 (use backend 'gke' or 'vertex' for several machines)."
        )
    return train_replicas


def build_pipeline(
    *,
    backend: str = "local",
    image: Optional[str] = None,
    profiles: Optional[Mapping[str, object]] = None,
    train_retries: int = 3,
    secret_env: Optional[Mapping[str, Mapping[str, str]]] = None,
    train_replicas: int = 1,
):
    """Builds the pipeline function for a backend.

    Args:
        backend: `local` (kfp.local: continuous_eval runs after train, as local tasks
            run one at a time), `gke` (Kubernetes resource names, node selectors,
            tolerations) or `vertex` (Vertex accelerator names; the custom-job
            route for TPUs and spot).
        image: The container image of every step; default `$TFPIPE_IMAGE`, and on
            `local` else `kfp_components.LOCAL_IMAGE` (required on `gke` and
            `vertex`: see `pipeline_image`).
        profiles: Resource profiles per step (`train`, `eval`, `export`), each a
            spec string such as `"cpu=8,memory=32G,gpu=l4:1,spot"` or a mapping.
        train_retries: Retries of the train step (preemption); it resumes from
            its latest checkpoint.
        train_replicas: Machines that train together with
            MultiWorkerMirroredStrategy (the pipeline's `distribution_strategy` input then
            does not apply to the train step). 1 (the default): one train
            task. More: on `vertex` a CustomJob with `train_replicas` replicas
            of the train profile's machine (restarted together); on `gke` a
            launcher task that runs a Kubeflow TFJob of one chief and
            `train_replicas - 1` workers, each with the train profile
            (`tfpipe.pipelines.multi_worker`). Not available on `local`.
        secret_env: GKE only: Kubernetes secrets to expose to every step as
            environment variables, `{secret_name: {secret_key: ENV_VAR}}`
            (kfp-kubernetes `use_secret_as_env`); the YAML holds only the names.
            On Vertex, steps authenticate as the run's service account.

    Returns:
        The `@dsl.pipeline` function.

    Raises:
        ValueError: For an unknown backend or step, or an invalid resource
            profile for the backend (before anything is compiled).
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}.")
    unknown = sorted(set(profiles or {}) - set(STEPS))
    if unknown:
        raise ValueError(f"resource profiles for unknown step(s) {unknown}; steps are {list(STEPS)}.")
    parsed = {step: resources.parse_profile((profiles or {}).get(step), step=step) for step in STEPS}
    custom_job = {step: backend == "vertex" and (p.tpu is not None or p.spot) for step, p in parsed.items()}
    if backend != "local":
        for step, profile in parsed.items():
            resources.validate_for_backend(profile, backend=backend, custom_job=custom_job[step])
    checks.check_positive_int("train_retries", train_retries, allow_zero=True)
    replicas = _check_train_replicas(train_replicas, backend)
    custom_job["train"] = custom_job["train"] or (backend == "vertex" and replicas > 1)
    tfjob = backend == "gke" and replicas > 1
    if tfjob:
        multi_worker.pod_placement(parsed["train"])  # Refuses what TFJob replicas cannot be given, now.
    secrets = _check_secret_env(secret_env, backend)
    image = pipeline_image(image, backend)

    ops = kfp_components.components_for_image(image)
    light = dict(base_image=image, install_kfp_package=False)
    resolve_op = dsl.component(resolve_model_dir, **light)
    baseline_op = dsl.component(beats_baseline, **light)

    def place(component, step, **options):
        if custom_job[step]:
            return resources.vertex_custom_job_component(component, parsed[step], **options)
        return component

    if tfjob:
        train_op = multi_worker.tfjob_train_component(image)
    elif replicas > 1:  # Vertex: every replica runs the train component; a lost one restarts them all.
        train_op = place(ops.train, "train", replica_count=replicas, restart_job_on_worker_restart=True)
    else:
        train_op = place(ops.train, "train")
    eval_op = place(ops.continuous_eval, "eval")
    export_op = place(ops.export, "export")
    final_eval_op = place(ops.evaluate, "eval")

    def configure(task, step):
        # A TFJob launcher is light: the train profile goes to the TFJob's replicas instead.
        if backend != "local" and not custom_job[step] and not (tfjob and step == "train"):
            resources.apply_profile(task, parsed[step], backend=backend)
        for secret_name, key_to_env in secrets.items():
            kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=dict(key_to_env))
        return task

    @dsl.pipeline(name="export-stage")
    def export_stage(task: str, task_config: str, model_dir: str, eval_name: str, thresholds: str, export_dir: str,
                     final_evaluate: bool):
        """Exports the best checkpoint; optionally evaluates it once more (it is what `best` names)."""
        exported = configure(export_op(task=task, task_config=task_config, model_dir=model_dir, checkpoint="best",
                                       eval_name=eval_name, thresholds=thresholds, export_dir=export_dir), "export")
        exported.set_display_name("export")
        with dsl.If(final_evaluate == True, name="final-evaluate"):  # noqa: E712 (a KFP condition)
            final = configure(final_eval_op(task=task, task_config=task_config, model_dir=model_dir,
                                            checkpoint="best", eval_name="final", best_eval_name=eval_name), "eval")
            final.set_display_name("evaluate-exported").after(exported)

    @dsl.pipeline(name=PIPELINE_NAME)
    def train_eval_export(
        task: str = "digits",
        task_config: str = "{}",
        model_dir: str = "",
        train_steps: int = 1000,
        steps_per_loop: int = 100,
        checkpoint_interval: int = 100,
        max_to_keep: int = 5,
        distribution_strategy: str = "default",
        policy: str = "all",
        idle_timeout: int = 3600,
        poll_interval: float = 1.0,
        best_metric: str = "loss",
        best_mode: str = "lower",
        eval_name: str = "validation",
        thresholds: str = "{}",
        baseline_model_uri: str = "",
        export_dir: str = "",
        final_evaluate: bool = False,
    ):
        """Trains a task while evaluating every checkpoint, then exports the best one if it is good enough.

        Args:
            task: Registered task name (e.g. digits) or package.module:factory.
            task_config: The task's config as a JSON object.
            model_dir: Run directory (gs://bucket/path); empty: <pipeline root>/<job id>/model_dir.
            train_steps: Global step to train up to.
            steps_per_loop: Steps per inner training loop.
            checkpoint_interval: Save a checkpoint every this many steps.
            max_to_keep: Checkpoints to keep (the evaluator pins the best one apart).
            distribution_strategy: TensorFlow distribution strategy: default, mirrored, tpu or multi_worker_mirrored.
            policy: Which checkpoints to evaluate: all, latest, or a step stride.
            idle_timeout: The evaluator fails after this many seconds without a new checkpoint (0: never).
            poll_interval: Seconds between the evaluator's looks for new checkpoints.
            best_metric: The metric that picks the best checkpoint (e.g. accuracy, loss).
            best_mode: higher or lower: which values of best_metric are better.
            eval_name: The evaluator's name; its records go to <model_dir>/eval/<eval_name>/.
            thresholds: Export only if the best checkpoint passes, e.g. {"accuracy": ">= 0.9"}.
            baseline_model_uri: A model exported by tfpipe before; export only if best_metric beats its own.
            export_dir: Also export to <export_dir>/<step>/ (e.g. gs://bucket/serving/model).
            final_evaluate: Evaluate the exported checkpoint once more (records under eval/final/).
        """
        run_dir = resolve_op(model_dir=model_dir, pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
                             job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        run_dir.set_display_name("model-dir").set_caching_options(False)
        train_args = dict(task=task, task_config=task_config, model_dir=run_dir.output, train_steps=train_steps,
                          steps_per_loop=steps_per_loop, checkpoint_interval=checkpoint_interval,
                          max_to_keep=max_to_keep)
        if tfjob:
            trained = configure(train_op(
                **train_args, image=image, replicas=replicas, resource_profile=parsed["train"].to_spec(),
                secret_env=json.dumps(secrets, sort_keys=True), run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "train")
            trained.set_display_name("train")
        else:
            trained = configure(train_op(
                **train_args,
                distribution_strategy="multi_worker_mirrored" if replicas > 1 else distribution_strategy), "train")
        trained.set_caching_options(False).set_retry(num_retries=train_retries, backoff_duration="30s",
                                                     backoff_factor=2.0, backoff_max_duration="600s")
        watched = configure(eval_op(
            task=task, task_config=task_config, model_dir=run_dir.output, policy=policy, idle_timeout=idle_timeout,
            poll_interval=poll_interval, best_metric=best_metric, best_mode=best_mode, eval_name=eval_name,
            thresholds=thresholds), "eval")
        watched.set_caching_options(False).set_retry(num_retries=2, backoff_duration="30s")
        if backend == "local":
            watched.after(trained)  # Local tasks run one at a time: the evaluator catches up afterwards.
        stage_args = dict(task=task, task_config=task_config, model_dir=run_dir.output, eval_name=eval_name,
                          thresholds=thresholds, export_dir=export_dir, final_evaluate=final_evaluate)
        with dsl.If(baseline_model_uri != "", name="baseline-given"):
            baseline = dsl.importer(artifact_uri=baseline_model_uri, artifact_class=Model, reimport=False)
            verdict = baseline_op(candidate=watched.outputs["metrics"], baseline=baseline.output,
                                  metric=best_metric, mode=best_mode, thresholds_passed=watched.outputs["passed"])
            verdict.set_display_name("beats-baseline")
            with dsl.If(verdict.output == True, name="better-than-baseline"):  # noqa: E712
                export_stage(**stage_args).after(trained)
        with dsl.Else(name="no-baseline"):
            with dsl.If(watched.outputs["passed"] == True, name="thresholds-passed"):  # noqa: E712
                export_stage(**stage_args).after(trained)

    return train_eval_export
