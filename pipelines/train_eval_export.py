"""The train ∥ continuous-eval → gated export pipeline, for a backend, an image and resource profiles.

    model-dir ─> check-inputs ─┬─> train ────────────┐
                               └─> continuous_eval ──┴─> gate (thresholds; baseline via dsl.importer)
                                                           └─> export-if-passed: export ─> [evaluate]

train and continuous_eval start together on one `model_dir` (a string, so both see it
while they run); export runs after both, only when the best checkpoint passes the
thresholds and, given a baseline model URI, beats the baseline's recorded metric.
`check-inputs` checks every input against the task once, without retries, so that
an input that can never work fails in seconds, not after the train step's retries.

The pipeline's parameters are the declared pipeline inputs of the components
whose registry row says `pipeline_inputs` (`tfpipe.components.registry`), each
once, plus `baseline_model_uri` and `final_evaluate`: a new input of those
components becomes a pipeline parameter by itself.
Built with `data_inputs` (`train_data`, `eval_data`), it also takes each as a
URI parameter, imports it once as a `Dataset` (`dsl.importer`) and hands the
artifact to check-inputs, train, continuous_eval and the gated export: the data
edges show in the compiled pipeline and its lineage. (A KFP importer refuses an
empty URI at run time, so these parameters are required where they exist: the
data inputs are chosen when the pipeline is built.)
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from kfp import dsl
from kfp import kubernetes
from kfp.dsl import Dataset, Model

from tfpipe import __version__, checks
from tfpipe.components import definitions
from tfpipe.components import interface
from tfpipe.components import kfp_components
from tfpipe.components import registry
from tfpipe.components.train import tfjob as tfjob_train
from tfpipe.components.baseline import definition as baseline_definition
from tfpipe.components.check_inputs import inputs as check_inputs_inputs
from tfpipe.components.export_if_passed import definition as export_if_passed
from tfpipe.components.model_dir import definition as model_dir_definition
from tfpipe.pipelines import backends, dag, placement, vertex
from tfpipe.pipelines import defaults as defaults_lib
from tfpipe.pipelines.profiles import parse_profile

BACKENDS = ("local", "gke", "vertex")
STEPS = ("train", "eval", "export")
PIPELINE_NAME = "tfpipe-train-eval-export"

BASELINE_MODEL_URI = interface.Input(
    "baseline_model_uri", str, "A model exported by tfpipe before; export only if the best metric beats its own.",
    default="", check=checks.check_optional_uri)
PIPELINE_INPUTS = (
    *interface.union(registry.pipeline_interfaces()),
    BASELINE_MODEL_URI,
    export_if_passed.FINAL_EVALUATE,
)
# Pipeline-level defaults: a runnable example, and an empty model_dir for one under the pipeline root.
PIPELINE_DEFAULTS = {"task": "digits", "model_dir": "", "train_steps": 1000}
# The data inputs a pipeline can be built with (`data_inputs`): each a URI parameter, imported as a Dataset.
DATA_URI_INPUTS = {
    name: interface.Input(name, str, f"URI of the {what} (a folder, glob or file), imported as a Dataset and "
                          "given to every step.", check=checks.check_uri)
    for name, what in (("train_data", "training data"), ("eval_data", "validation data"))
}


def _arguments(component: interface.Interface, values: Mapping[str, Any], **overrides: Any) -> Dict[str, Any]:
    """The arguments of `component`'s KFP inputs that the pipeline has (its own defaults for the rest)."""
    arguments = {name: values[name] for name in component.names(kfp_only=True) if name in values}
    return {**arguments, **overrides}


def _check_secret_env(secret_env: Optional[Mapping[str, Mapping[str, str]]], backend: str) -> dict:
    """Checks `secret_env` ({secret: {key: ENV}}, `checks.check_secret_env`): GKE only."""
    if secret_env and backend != "gke":
        raise checks.InputError(
            f"`secret_env` needs backend 'gke' (Kubernetes secrets), got backend {backend!r}; on Vertex, grant the "
            "run's service account access instead."
        )
    return checks.check_secret_env("secret_env", secret_env)


def pipeline_image(image: Optional[str], backend: str) -> str:
    """The image of every step: `image`, else `$TFPIPE_IMAGE`; on `local` else the tag `make image` builds.

    A cluster must be able to pull the image, and tfpipe publishes none: compiling
    for `gke` or `vertex` needs one named.

    Raises:
        checks.InputError: On `gke` or `vertex` when neither `image` nor `$TFPIPE_IMAGE` is given, or for a malformed
            reference.
    """
    image = image or os.environ.get("TFPIPE_IMAGE") or (kfp_components.LOCAL_IMAGE if backend == "local" else None)
    if image is None:
        ref = f"REGISTRY/tfpipe:{__version__}"
        raise checks.InputError(
            f"`image` is required for backend {backend!r} (none given, $TFPIPE_IMAGE not set): build the image with "
            f"`make image IMAGE={ref}`, push it where the cluster can pull it (`docker push {ref}`), and pass "
            f"`--image {ref}` (or set TFPIPE_IMAGE)."
        )
    return checks.check_image("image", image)


def _check_train_replicas(train_replicas: object, backend: str) -> int:
    checks.check_positive_int("train_replicas", train_replicas, maximum=1000)
    if train_replicas > 1 and backend == "local":
        raise checks.InputError(
            f"`train_replicas` is {train_replicas}, but backend 'local' runs one process per step; accepted there: "
            "1 (use backend 'gke' or 'vertex' for several machines)."
        )
    return train_replicas


def build_pipeline(
    *,
    backend: str = "local",
    image: Optional[str] = None,
    profiles: Optional[Mapping[str, object]] = None,
    train_retries: Optional[int] = None,
    secret_env: Optional[Mapping[str, Mapping[str, str]]] = None,
    train_replicas: int = 1,
    vertex_tensorboard: str = "",
    register_model: str = "",
    parent_model: str = "",
    serving_image: str = vertex.DEFAULT_SERVING_IMAGE,
    data_inputs: Sequence[str] = (),
    defaults: Optional[Mapping[str, Any]] = None,
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
            its latest checkpoint. Default: `dag.SETTINGS["train"]`, the policy
            users' DAGs get from `dag.configure` too.
        train_replicas: Machines that train together with
            MultiWorkerMirroredStrategy (the pipeline's `distribution_strategy` input then
            does not apply to the train step). 1 (the default): one train
            task. More: on `vertex` a CustomJob with `train_replicas` replicas
            of the train profile's machine (restarted together); on `gke` a
            launcher task that runs a Kubeflow TFJob of one chief and
            `train_replicas - 1` workers, each with the train profile
            (`tfpipe.components.train.tfjob`). Not available on `local`.
        secret_env: GKE only: Kubernetes secrets to expose to every step as
            environment variables, `{secret_name: {secret_key: ENV_VAR}}`
            (kfp-kubernetes `use_secret_as_env`); the YAML holds only the names.
            On Vertex, steps authenticate as the run's service account.
        vertex_tensorboard: Vertex only: a Vertex AI TensorBoard
            (`projects/P/locations/L/tensorboards/ID`) that the train and
            continuous-eval steps upload their curves to. Both then run as
            custom jobs with a base output directory under the run directory
            (`<model_dir>/vertex/train`, `.../eval`), as the run's service
            account; the components copy their summaries into the
            `AIP_TENSORBOARD_LOG_DIR` Vertex sets (`tfpipe.components.common.vertex_env`).
        register_model: Vertex only: after a gated export, register the
            SavedModel in Vertex AI Model Registry under this display name
            (GCPC's `ModelUploadOp`; labels: the run, the step, each metric).
        parent_model: With `register_model`: register a new version of this
            model (`projects/P/locations/L/models/ID`) instead of a new model.
        serving_image: With `register_model`: the prebuilt TensorFlow serving
            container the registered model is served with.
        data_inputs: `train_data` and/or `eval_data`: the pipeline takes each as a
            (required) URI parameter and imports it as a `Dataset` for every step.
        defaults: Pipeline parameter defaults to compile in (e.g. `{"task": "sine",
            "train_steps": 5000}`), each checked as a run's parameter is; they
            replace `PIPELINE_DEFAULTS`. On `gke` and `vertex` an image not named
            `tfpipe` needs a `task` here (`defaults.check_task_for_image`).

    Returns:
        The `@dsl.pipeline` function.

    Raises:
        checks.InputError: For an unknown backend or step, or an invalid resource
            profile for the backend (before anything is compiled).
    """
    if backend not in BACKENDS:
        raise checks.InputError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}.")
    if isinstance(data_inputs, str) or not set(data_inputs) <= set(DATA_URI_INPUTS):
        raise checks.InputError(f"`data_inputs` must name some of {list(DATA_URI_INPUTS)}, got {data_inputs!r}.")
    data_inputs = tuple(name for name in DATA_URI_INPUTS if name in data_inputs)
    unknown = sorted(set(profiles or {}) - set(STEPS))
    if unknown:
        raise checks.InputError(f"resource profiles for unknown step(s) {unknown}; steps are {list(STEPS)}.")
    parsed = {step: parse_profile((profiles or {}).get(step), step=step) for step in STEPS}
    custom_job = {step: backend == "vertex" and (p.tpu is not None or p.spot) for step, p in parsed.items()}
    if backend != "local":
        for step, profile in parsed.items():
            backends.validate_for_backend(profile, backend=backend, custom_job=custom_job[step])
    if train_retries is not None:
        checks.check_non_negative_int("train_retries", train_retries)
    replicas = _check_train_replicas(train_replicas, backend)
    custom_job["train"] = custom_job["train"] or (backend == "vertex" and replicas > 1)
    tfjob = backend == "gke" and replicas > 1
    # Each TFJob replica's pod placement, now: refuses what TFJob replicas cannot be given before compiling.
    replica_placement = placement.tfjob_placement(parsed["train"]) if tfjob else None
    secrets = _check_secret_env(secret_env, backend)
    image = pipeline_image(image, backend)
    compiled_defaults = {**PIPELINE_DEFAULTS, **defaults_lib.check_defaults(defaults, PIPELINE_INPUTS)}
    if backend != "local":
        defaults_lib.check_task_for_image(image, dict(defaults or {}), PIPELINE_DEFAULTS["task"])
    tensorboard = vertex.check_tensorboard("vertex_tensorboard", vertex_tensorboard)
    registered_name = vertex.check_model_name("register_model", register_model)
    parent = vertex.check_parent_model("parent_model", parent_model)
    checks.check_image("serving_image", serving_image)
    for name, given in (("vertex_tensorboard", tensorboard), ("register_model", registered_name),
                        ("parent_model", parent)):
        if given and backend != "vertex":
            raise checks.InputError(f"`{name}` needs backend 'vertex', got backend {backend!r}.")
    if parent and not registered_name:
        raise checks.InputError(f"`parent_model` ({parent}) needs `register_model`: the display name of the new version.")
    if tensorboard:  # TensorBoard uploads are a custom job's: train and evaluation steps take that route.
        custom_job.update(train=True, eval=True)

    ops = kfp_components.components_for_image(image)
    light = dict(base_image=image, install_kfp_package=False)
    resolve_op = dsl.component(model_dir_definition.resolve_run_dirs, **light) if tensorboard else ops.model_dir
    baseline_op = dsl.component(baseline_definition.beats_baseline, **light)

    def place(component, step, **options):
        """The step's component with its profile (`dag.with_resources`); a TFJob launcher is light (the train
        profile goes to the TFJob's replicas instead)."""
        if backend == "local" or (tfjob and step == "train"):
            return component
        return dag.with_resources(component, parsed[step], backend=backend, step=step, custom_job=custom_job[step],
                                  **options)

    board = vertex.tensorboard_options(tensorboard) if tensorboard else {}
    if tfjob:
        train_op = tfjob_train.component(image)
    elif replicas > 1:  # Vertex: every replica runs the train component; a lost one restarts them all.
        train_op = place(ops.train, "train", replica_count=replicas, restart_job_on_worker_restart=True, **board)
    else:
        train_op = place(ops.train, "train", **board)
    eval_op = place(ops.continuous_eval, "eval", **board)

    def with_secrets(task, step=None):
        for secret_name, key_to_env in secrets.items():
            kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=dict(key_to_env))
        return task

    register = vertex.model_registration(
        display_name=registered_name, image=image, serving_image=serving_image, parent_model=parent,
    ) if registered_name else None
    export_stage = export_if_passed.build(place(ops.export, "export"), place(ops.evaluate, "eval", **board),
                                      configure=with_secrets, register=register, final_output_dir=bool(tensorboard),
                                      data_inputs=data_inputs)

    def body(p: Dict[str, Any]) -> None:
        run_dir = dag.run_dir(resolve_op, p["model_dir"])
        values = {**p, "model_dir": run_dir.outputs["model_dir"] if tensorboard else run_dir.output}
        for name in data_inputs:
            imported = dsl.importer(artifact_uri=p[name], artifact_class=Dataset, reimport=False)
            imported.set_display_name(f"import-{name.replace('_', '-')}")
            values[name] = imported.output
        # With a Vertex TensorBoard, each custom job's base output directory (AIP_TENSORBOARD_LOG_DIR's parent).
        outputs = {step: {"base_output_directory": run_dir.outputs[f"{step}_output_dir"]} if tensorboard else {}
                   for step in ("train", "eval")}
        checked = with_secrets(dag.check_inputs(ops.check_inputs,
                                                **_arguments(check_inputs_inputs.INTERFACE, values)))
        values.update(best_metric=checked.outputs["best_metric"], best_mode=checked.outputs["best_mode"])
        train_args = {**_arguments(definitions.TRAIN, values), **outputs["train"]}
        if tfjob:
            train_args.update(image=image, replicas=replicas, placement=replica_placement.to_json(),
                              secret_env=json.dumps(secrets, sort_keys=True), run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        elif replicas > 1:
            train_args["distribution_strategy"] = "multi_worker_mirrored"
        pair = dag.train_and_evaluate(
            train_op, eval_op, train_args=train_args,
            eval_args={**_arguments(definitions.CONTINUOUS_EVAL, values), **outputs["eval"]},
            backend=backend, train_retries=train_retries, after=[checked], configure_task=with_secrets)
        trained, watched = pair.train, pair.evaluator
        stage = {i.name: values[i.name] for i in export_if_passed.INPUTS if i.name in values}
        if tensorboard:
            stage[export_if_passed.FINAL_OUTPUT_DIR.name] = run_dir.outputs["final_output_dir"]
        stage.update({name: values[name] for name in data_inputs})
        with dsl.If(p["baseline_model_uri"] != "", name="baseline-given"):
            baseline = dsl.importer(artifact_uri=p["baseline_model_uri"], artifact_class=Model, reimport=False)
            verdict = baseline_op(candidate=watched.outputs["metrics"], baseline=baseline.output,
                                  metric=values["best_metric"], mode=values["best_mode"],
                                  thresholds_passed=watched.outputs["passed"])
            verdict.set_display_name("beats-baseline")
            export_stage(**stage, passed=verdict.output).after(trained).set_display_name("export-if-better")
        with dsl.Else(name="no-baseline"):
            export_stage(**stage, passed=watched.outputs["passed"]).after(trained).set_display_name(
                "export-if-passed")

    return dsl.pipeline(name=PIPELINE_NAME)(interface.graph_function(
        "train_eval_export", "Trains a task while evaluating every checkpoint, then exports the best one if it "
        "is good enough.", (*PIPELINE_INPUTS, *(DATA_URI_INPUTS[n] for n in data_inputs)), body,
        defaults=compiled_defaults))
