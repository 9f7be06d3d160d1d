"""`tfpipe run-local`: the whole pipeline on this machine under kfp.local, then a summary.

kfp.local runs the steps one at a time: check-inputs, train, then continuous_eval,
which catches up on every checkpoint, then the gated export. Each step runs as a
subprocess of this Python (runner `subprocess`, SubprocessRunner without a venv), or
in a container of the project image (runner `docker`, DockerRunner: host
networking, the pipeline root and any local run, export or baseline directory
bind-mounted at the same absolute path, as the calling user). Because the evaluator
starts only after training, run-local keeps every checkpoint by default
(`max_to_keep` 0); with a smaller `max_to_keep` the summary names the checkpoints
that were deleted before the evaluator could see them. The summary is read from what
the steps left on disk (their executor outputs and the run directory), not from the
runner's status, which has been seen to report success for failed steps.

The run's parameters are the pipeline's (`PIPELINE_INPUTS`, so the components'
declared inputs), with defaults for a quick local run (`LOCAL_DEFAULTS`).
"""

import dataclasses
import glob
import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from kfp import local

from tfpipe import checks
from tfpipe.components.common import thresholds as thresholds_lib
from tfpipe.pipelines import local_output
from tfpipe.pipelines.train_eval_export import (
    DATA_URI_INPUTS, PIPELINE_DEFAULTS, PIPELINE_INPUTS, PIPELINE_NAME, build_pipeline, pipeline_image)

RUNNERS = ("subprocess", "docker")
# What differs from the pipeline's own defaults for a local run: shorter, polled faster, every checkpoint kept
# (the evaluator runs after training here), no gate unless asked for.
LOCAL_DEFAULTS: Dict[str, Any] = {
    "train_steps": 300, "steps_per_loop": 50, "checkpoint_interval": 100, "max_to_keep": 0,
    "poll_interval": 0.2, "idle_timeout": 600.0,
}
# The pipeline's parameters, and its optional data inputs (`--train-data URI`: the pipeline is built to import it).
DATA_INPUTS = {name: dataclasses.replace(item, default="", check=checks.check_optional_uri)
               for name, item in DATA_URI_INPUTS.items()}
INPUTS = {**{item.name: item for item in PIPELINE_INPUTS}, **DATA_INPUTS}


class LocalRunError(RuntimeError):
    """A step of the local run failed (its own error is in the log above)."""


class LocalInputError(LocalRunError):
    """A step of the local run refused an input (its one-line error is the message): exit status 2."""


class ContainerEngineError(RuntimeError):
    """The Docker engine that runner `docker` needs cannot be reached."""


@dataclasses.dataclass
class LocalRunSummary:
    """What a local run produced."""

    run_dir: str
    model_dir: str
    final_step: int
    train_metrics: Dict[str, float]
    evaluated: int
    skipped: int
    never_seen: List[int]
    best_step: int
    best_metrics: Dict[str, float]
    report: Optional[str]
    exported: bool
    saved_model: Optional[str]
    export_path: Optional[str]
    not_exported_because: str = ""
    gate: str = ""
    default_differences: Dict[str, Tuple[Any, Any]] = dataclasses.field(default_factory=dict)

    def lines(self) -> list:
        """The summary as printable lines."""
        fmt = lambda metrics: ", ".join(f"{k}: {v:.4g}" for k, v in sorted(metrics.items()))  # noqa: E731
        never = (f", {len(self.never_seen)} deleted by max_to_keep before the evaluator saw them "
                 f"{self.never_seen}" if self.never_seen else "")
        out = [
            f"run        {self.run_dir}",
            f"model_dir  {self.model_dir}",
            f"train      step {self.final_step} | {fmt(self.train_metrics)}",
            f"eval       {self.evaluated} checkpoints evaluated, {self.skipped} skipped (deleted while waiting)"
            f"{never} | best step {self.best_step} | {fmt(self.best_metrics)}",
            f"report     {self.report}",
            f"gate       {self.gate}",
        ]
        if self.default_differences:
            shown = lambda v: "every checkpoint" if v == "all" else v  # noqa: E731
            out.append("defaults   run-local's, not the compiled pipeline's: " + ", ".join(
                f"{name} {shown(mine)} (pipeline: {theirs})"
                for name, (mine, theirs) in sorted(self.default_differences.items())))
        if self.exported:
            out.append(f"SavedModel {self.saved_model}")
            if self.export_path:
                out.append(f"export_dir {self.export_path}")
        else:
            out.append(f"SavedModel none: {self.not_exported_because}")
        return out


def expected_checkpoints(train_steps: int, steps_per_loop: int, checkpoint_interval: int) -> List[int]:
    """The steps one uninterrupted train run saves: at each loop end that crossed an interval boundary, and the last."""
    saved, last, step = [], 0, 0
    while step < train_steps:
        step = min(step + steps_per_loop, train_steps)
        if step // checkpoint_interval > last // checkpoint_interval:
            saved.append(step)
            last = step
    if not saved or saved[-1] != train_steps:
        saved.append(train_steps)
    return saved


# kfp versions whose kfp.local output layout (`<run dir>/<task>[-N]/executor_output.json`, not a public API)
# `_executor_output` was checked against; tests/test_private_internals.py fails on another installed version.
KFP_LOCAL_CHECKED_VERSIONS = ("2.17",)


def _executor_output(run_dir: str, task: str) -> Optional[Dict[str, Any]]:
    """The executor output of `task` in a kfp.local run folder; a task in a sub-pipeline may carry a `-N` suffix.

    kfp.local's on-disk layout is not a public API: only this function reads it.
    """
    pattern = re.compile(rf"{re.escape(task)}(-\d+)?")
    found = sorted(
        path for path in glob.glob(os.path.join(run_dir, "**", "executor_output.json"), recursive=True)
        if pattern.fullmatch(os.path.basename(os.path.dirname(path)))
    )
    if not found:
        return None
    with open(found[0]) as f:
        return json.load(f)


def _artifact(output: Dict[str, Any], name: str) -> Dict[str, Any]:
    return output["artifacts"][name]["artifacts"][0]


def _gate(values: Dict[str, Any], best_metrics: Dict[str, float], best_step: int) -> str:
    """The summary's gate line: the thresholds, and whether the best checkpoint passed them."""
    thresholds = thresholds_lib.parse_thresholds("thresholds", values["thresholds"])
    if not thresholds:
        return "none (no --thresholds): the best checkpoint is exported"
    shown = ", ".join(f"{name} {op} {bound:g}" for name, (op, bound) in sorted(thresholds.items()))
    missed = thresholds_lib.missed_thresholds(best_metrics, thresholds)
    if missed:
        return f"missed by best step {best_step}: {'; '.join(missed)} (thresholds: {shown})"
    got = ", ".join(f"{name} = {best_metrics[name]:.4g}" for name in sorted(thresholds))
    return f"passed by best step {best_step}: {got} (thresholds: {shown})"


def default_differences(params: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """Each of run-local's own defaults (`LOCAL_DEFAULTS`) that `params` did not set: (local, pipeline's)."""
    pipeline = {name: PIPELINE_DEFAULTS.get(name, INPUTS[name].default) for name in LOCAL_DEFAULTS}
    return {name: ("all" if name == "max_to_keep" and local == 0 else local, pipeline[name])
            for name, local in LOCAL_DEFAULTS.items() if name not in params and local != pipeline[name]}


def summarize(run_dir: str, values: Dict[str, Any], *,
              differences: Optional[Dict[str, Tuple[Any, Any]]] = None) -> LocalRunSummary:
    """Reads a finished local run's outputs (`values`: the run's parameters; `differences`: run-local's defaults
    that differ from the pipeline's, for the summary).

    Raises:
        LocalRunError: If a step before export left no outputs (it failed).
    """
    outputs = {name: _executor_output(run_dir, name) for name in ("check-inputs", "train", "continuous-eval")}
    failed = [name for name, output in outputs.items() if output is None]
    if failed:
        raise LocalRunError(f"the local run in {run_dir} failed at step {failed[0]}: see its error above.")
    train, watched = outputs["train"], outputs["continuous-eval"]
    exported = _executor_output(run_dir, "export")
    if exported is not None and not exported.get("parameterValues", {}).get("exported", True):
        exported = None  # The export step ran with `passed` false: it exported nothing.
    ce_metrics = _artifact(watched, "metrics")["metadata"]
    model = _artifact(exported, "model") if exported else None
    model_dir = _artifact(train, "model")["metadata"]["model_dir"]
    records = glob.glob(os.path.join(model_dir, "eval", values["eval_name"], "records", "*.json"))
    recorded = {int(os.path.basename(r).split(".")[0]) for r in records}
    expected = expected_checkpoints(values["train_steps"], values["steps_per_loop"], values["checkpoint_interval"])
    never_seen = [s for s in expected if s not in recorded]
    reason = ""
    if model is None:
        missed = thresholds_lib.missed_thresholds(ce_metrics, thresholds_lib.parse_thresholds(
            "thresholds", values["thresholds"]))
        reason = ("the best checkpoint missed the thresholds: " + "; ".join(missed) if missed
                  else "the best checkpoint did not beat the baseline model" if values["baseline_model_uri"]
                  else "the export step failed; see its error above")
    return LocalRunSummary(
        run_dir=run_dir,
        model_dir=model_dir,
        final_step=int(train["parameterValues"]["final_step"]),
        train_metrics={k: v for k, v in _artifact(train, "metrics")["metadata"].items() if k != "step"},
        evaluated=int(watched["parameterValues"]["evaluated"]),
        skipped=int(watched["parameterValues"]["skipped"]),
        never_seen=never_seen,
        best_step=int(watched["parameterValues"]["best_step"]),
        best_metrics={k: v for k, v in ce_metrics.items() if k != "step"},
        report=_artifact(watched, "report")["uri"],
        exported=model is not None,
        saved_model=model["uri"] if model else None,
        export_path=(model["metadata"].get("export_path") or None) if model else None,
        not_exported_because=reason,
        gate=_gate(values, {k: v for k, v in ce_metrics.items() if k != "step"},
                   int(watched["parameterValues"]["best_step"])),
        default_differences=dict(differences or {}),
    )


def _absolute_local(uri: str) -> str:
    """`uri` as an absolute path when it is a local path; gs:// URIs and "" as they are."""
    return os.path.abspath(uri) if uri and not uri.startswith(checks.URI_SCHEMES) else uri


def _docker_runner(image: str, mounted: List[str]) -> "local.DockerRunner":
    """A DockerRunner for `image` (which must be in the local engine), binding `mounted` at the same paths.

    Raises:
        MissingExtraError: Without the `docker` package.
        ContainerEngineError: When no Docker engine answers.
        checks.InputError: When the engine does not have `image`.
    """
    docker = checks.import_extra("docker", extra="docker", needed_for="runner 'docker'")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ContainerEngineError(
            f"runner 'docker' cannot reach a Docker engine ({reason}); start Docker (or point DOCKER_HOST at one), "
            "or use runner 'subprocess'."
        ) from None
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise checks.InputError(
            f"`image` {image!r} is not in the local Docker engine; build it with `make image IMAGE={image}` "
            f"(or `docker pull {image}`)."
        ) from None
    finally:
        client.close()
    mounts = [docker.types.Mount(target=path, source=path, type="bind") for path in mounted]
    return local.DockerRunner(network_mode="host", user=f"{os.getuid()}:{os.getgid()}", mounts=mounts)


def run_local(*, pipeline_root: str = "local_outputs", runner: str = "subprocess", image: Optional[str] = None,
              verbose: bool = True, **params: Any) -> LocalRunSummary:
    """Runs the train ∥ continuous-eval → export pipeline locally and summarises it.

    Args:
        pipeline_root: Where kfp.local keeps the steps' outputs (a local folder).
        runner: `subprocess` (each step a subprocess of this Python) or `docker` (each step a container of
            `image`; needs the `docker` extra and a Docker engine).
        image: Runner `docker` only: the image the steps run in (it must be in the local engine); default
            `$TFPIPE_IMAGE`, else the tag `make image` builds (`kfp_components.LOCAL_IMAGE`).
        **params: Pipeline parameters (`PIPELINE_INPUTS`); the rest take `LOCAL_DEFAULTS`, then the pipeline's.
            `max_to_keep` 0 keeps every checkpoint.
        verbose: Print everything kfp.local streams; False (`tfpipe run-local` without `--verbose`): only each
            step's status and its own progress and error lines (`local_output.QuietOutput`), TensorFlow's C++
            logs off, and a failure ends with the failed step's own error.

    Raises:
        checks.InputError: For a bad parameter (each is checked here before anything runs; the task and metric
            names are checked by the run's first step, which is never retried), or an image the engine lacks.
        checks.MissingExtraError: Runner `docker` without the `docker` package.
        ContainerEngineError: Runner `docker` without a reachable Docker engine.
        LocalRunError: When a step failed.
    """
    unknown = sorted(set(params) - set(INPUTS))
    if unknown:
        raise checks.InputError(f"unknown run-local parameter(s) {unknown}; accepted: {sorted(INPUTS)}.")
    values = {**{n: i.default for n, i in INPUTS.items() if not i.required}, **PIPELINE_DEFAULTS, **LOCAL_DEFAULTS,
              **params}
    for name, value in values.items():
        if name != "max_to_keep" and (name != "model_dir" or value):
            INPUTS[name].validate(value)
    if values["max_to_keep"] == 0:  # Keep them all: the evaluator starts after training.
        saved = expected_checkpoints(values["train_steps"], values["steps_per_loop"], values["checkpoint_interval"])
        values["max_to_keep"] = len(saved) + 1
    INPUTS["max_to_keep"].validate(values["max_to_keep"])
    root = checks.check_uri("pipeline_root", pipeline_root)
    if root.startswith("gs://"):
        raise checks.InputError(
            f"`pipeline_root` ({checks.shown(pipeline_root)}) must be a local folder: kfp.local keeps the steps' "
            "outputs on this machine (the model_dir may be on gs://).")
    root = os.path.abspath(root)
    checks.check_choice("runner", runner, RUNNERS)
    if image is not None and runner != "docker":
        raise checks.InputError(f"`image` ({image!r}) is only used with runner 'docker', got runner {runner!r}.")
    if runner == "docker":
        # A container sees only what is bind-mounted: local run, export and baseline directories outside the
        # pipeline root are mounted at the same absolute paths; the run and export directories are created (a bind
        # source must exist) once the engine and the image are known to be there.
        read_only = ("baseline_model_uri", *DATA_INPUTS)
        for name in ("model_dir", "export_dir", *read_only):
            values[name] = _absolute_local(values[name])
        outside = [path for path in dict.fromkeys(values[n] for n in ("model_dir", "export_dir", *read_only))
                   if path.startswith("/") and os.path.commonpath([path, root]) != root]
        mounted = [path for path in outside
                   if path not in [values[n] for n in read_only] or os.path.exists(path)]
        image = pipeline_image(image, "local")
        step_runner = _docker_runner(image, mounted)
        for path in (values["model_dir"], values["export_dir"]):
            if path in outside:
                os.makedirs(path, exist_ok=True)
    else:
        step_runner = local.SubprocessRunner(use_venv=False)
    os.makedirs(root, exist_ok=True)
    before = set(glob.glob(os.path.join(root, f"{PIPELINE_NAME}-*")))
    local.init(runner=step_runner, pipeline_root=root, raise_on_error=False)
    data = {name: values.pop(name) for name in DATA_INPUTS if name in values}
    data = {name: uri for name, uri in data.items() if uri}
    pipeline = build_pipeline(backend="local", image=image, data_inputs=tuple(data))
    quiet_env = {} if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ else {"TF_CPP_MIN_LOG_LEVEL": "3"}
    os.environ.update(quiet_env)  # The steps' processes inherit it.
    try:
        with local_output.maybe_quiet(verbose) as quiet:
            pipeline(**values, **data)
    finally:
        for name in quiet_env:
            os.environ.pop(name, None)
    (run_dir,) = sorted(set(glob.glob(os.path.join(root, f"{PIPELINE_NAME}-*"))) - before)[-1:]
    try:
        return summarize(run_dir, values, differences=default_differences(params))
    except LocalRunError as e:
        if quiet is None or not quiet.last_error:
            raise
        kind = LocalInputError if quiet.input_error else LocalRunError
        raise kind(f"step {quiet.task} failed: {quiet.last_error}") from e
