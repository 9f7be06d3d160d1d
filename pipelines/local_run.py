"""`tfpipe run-local`: the whole pipeline on this machine under kfp.local, then a summary.

kfp.local runs the steps one at a time: train first, then continuous_eval, which
catches up on every checkpoint, then the gated export. Each step runs as a
subprocess of this Python (runner `subprocess`, SubprocessRunner without a venv), or
in a container of the project image (runner `docker`, DockerRunner: host
networking, the pipeline root and any local run, export or baseline directory
bind-mounted at the same absolute path, as the calling user). The summary is read
from what the steps left on disk (their executor outputs and the run directory), not
from the runner's status, which has been seen to report success for failed steps.
"""

import dataclasses
import glob
import json
import os
import re
from typing import Any, Dict, List, Optional

from kfp import local

from tfpipe import checks
from tfpipe.components.thresholds import parse_thresholds
from tfpipe.pipelines.train_eval_export import PIPELINE_NAME, build_pipeline, pipeline_image

RUNNERS = ("subprocess", "docker")


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
    best_step: int
    best_metrics: Dict[str, float]
    report: Optional[str]
    exported: bool
    saved_model: Optional[str]
    export_path: Optional[str]

    def lines(self) -> list:
        """The summary as printable lines."""
        fmt = lambda metrics: ", ".join(f"{k}: {v:.4g}" for k, v in sorted(metrics.items()))  # noqa: E731
        out = [
            f"run        {self.run_dir}",
            f"model_dir  {self.model_dir}",
            f"train      step {self.final_step} | {fmt(self.train_metrics)}",
            f"eval       {self.evaluated} checkpoints evaluated, {self.skipped} skipped | best step {self.best_step} "
            f"| {fmt(self.best_metrics)}",
            f"report     {self.report}",
        ]
        if self.exported:
            out.append(f"SavedModel {self.saved_model}")
            if self.export_path:
                out.append(f"export_dir {self.export_path}")
        else:
            out.append("SavedModel none: the best checkpoint did not pass the export gate")
        return out


def _executor_output(run_dir: str, task: str) -> Optional[Dict[str, Any]]:
    """The executor output of `task`; a task in a sub-pipeline used twice may carry a `-N` suffix."""
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


def summarize(run_dir: str) -> LocalRunSummary:
    """Reads a finished local run's outputs.

    Raises:
        RuntimeError: If train or continuous_eval left no outputs (they failed).
    """
    train = _executor_output(run_dir, "train")
    watched = _executor_output(run_dir, "continuous-eval")
    if train is None or watched is None:
        missing = [n for n, o in (("train", train), ("continuous-eval", watched)) if o is None]
        raise RuntimeError(f"The local run in {run_dir} failed: no outputs from {missing}; see the log above.")
    exported = _executor_output(run_dir, "export")
    ce_metrics = _artifact(watched, "metrics")["metadata"]
    model = _artifact(exported, "model") if exported else None
    return LocalRunSummary(
        run_dir=run_dir,
        model_dir=_artifact(train, "model")["metadata"]["model_dir"],
        final_step=int(train["parameterValues"]["final_step"]),
        train_metrics={k: v for k, v in _artifact(train, "metrics")["metadata"].items() if k != "step"},
        evaluated=int(watched["parameterValues"]["evaluated"]),
        skipped=int(watched["parameterValues"]["skipped"]),
        best_step=int(watched["parameterValues"]["best_step"]),
        best_metrics={k: v for k, v in ce_metrics.items() if k != "step"},
        report=_artifact(watched, "report")["uri"],
        exported=model is not None,
        saved_model=model["uri"] if model else None,
        export_path=(model["metadata"].get("export_path") or None) if model else None,
    )


def _absolute_local(uri: str) -> str:
    """`uri` as an absolute path when it is a local path; gs:// URIs and "" as they are."""
    return os.path.abspath(uri) if uri and not uri.startswith(checks.URI_SCHEMES) else uri


def _docker_runner(image: str, mounted: List[str]) -> "local.DockerRunner":
    """A DockerRunner for `image` (which must be in the local engine), binding `mounted` at the same paths.

    Raises:
        MissingExtraError: Without the `docker` package.
        ContainerEngineError: When no Docker engine answers.
        ValueError: When the engine does not have `image`.
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
        raise ValueError(
            f"`image` {image!r} is not in the local Docker engine; build it with `make image IMAGE={image}` "
            f"(or `docker pull {image}`)."
        ) from None
    finally:
        client.close()
    mounts = [docker.types.Mount(target=path, source=path, type="bind") for path in mounted]
    return local.DockerRunner(network_mode="host", user=f"{os.getuid()}:{os.getgid()}", mounts=mounts)


def run_local(
    *,
    task: str = "digits",
    task_config: str = "{}",
    train_steps: int = 300,
    model_dir: str = "",
    pipeline_root: str = "local_outputs",
    steps_per_loop: int = 50,
    checkpoint_interval: int = 100,
    best_metric: str = "accuracy",
    best_mode: str = "higher",
    thresholds: str = '{"accuracy": ">= 0.9"}',
    export_dir: str = "",
    baseline_model_uri: str = "",
    final_evaluate: bool = False,
    runner: str = "subprocess",
    image: Optional[str] = None,
) -> LocalRunSummary:
    """Runs the train ∥ continuous-eval → export pipeline locally and summarises it.

    The defaults train the built-in `digits` example for 300 steps and export the
    best checkpoint if its accuracy is at least 0.9. Inputs are checked before the
    run starts (the components check theirs again).

    Args:
        runner: `subprocess` (each step a subprocess of this Python) or `docker`
            (each step a container of `image`; needs the `docker` extra and a
            Docker engine).
        image: Runner `docker` only: the image the steps run in (it must be in the
            local engine); default `$TFPIPE_IMAGE`, else the tag `make image`
            builds (`kfp_components.LOCAL_IMAGE`).

    Raises:
        ValueError: For a bad input, or an image the local engine does not have.
        MissingExtraError: Runner `docker` without the `docker` package.
        ContainerEngineError: Runner `docker` without a reachable Docker engine.
        RuntimeError: When train or continuous_eval left no outputs.
    """
    parse_thresholds(thresholds)
    for name, value in (("train_steps", train_steps), ("steps_per_loop", steps_per_loop),
                        ("checkpoint_interval", checkpoint_interval)):
        checks.check_positive_int(name, value)
    checks.check_choice("runner", runner, RUNNERS)
    if image is not None and runner != "docker":
        raise ValueError(f"`image` ({image!r}) is only used with runner 'docker', got runner {runner!r}.")
    root = os.path.abspath(pipeline_root)
    if runner == "docker":
        # A container sees only what is bind-mounted: local run, export and baseline directories outside the
        # pipeline root are mounted at the same absolute paths; the run and export directories are created (a bind
        # source must exist) once the engine and the image are known to be there.
        model_dir, export_dir, baseline_model_uri = map(_absolute_local, (model_dir, export_dir, baseline_model_uri))
        outside = [path for path in dict.fromkeys((model_dir, export_dir, baseline_model_uri))
                   if path.startswith("/") and os.path.commonpath([path, root]) != root]
        mounted = [path for path in outside if path != baseline_model_uri or os.path.exists(path)]
        image = pipeline_image(image, "local")
        step_runner = _docker_runner(image, mounted)
        for path in (model_dir, export_dir):
            if path in outside:
                os.makedirs(path, exist_ok=True)
    else:
        step_runner = local.SubprocessRunner(use_venv=False)
    os.makedirs(root, exist_ok=True)
    before = set(glob.glob(os.path.join(root, f"{PIPELINE_NAME}-*")))
    local.init(runner=step_runner, pipeline_root=root, raise_on_error=True)
    pipeline = build_pipeline(backend="local", image=image)
    pipeline(
        task=task, task_config=task_config, model_dir=model_dir, train_steps=train_steps,
        steps_per_loop=steps_per_loop, checkpoint_interval=checkpoint_interval, best_metric=best_metric,
        best_mode=best_mode, thresholds=thresholds, export_dir=export_dir, baseline_model_uri=baseline_model_uri,
        final_evaluate=final_evaluate, poll_interval=0.2, idle_timeout=600,
    )
    (run_dir,) = sorted(set(glob.glob(os.path.join(root, f"{PIPELINE_NAME}-*"))) - before)[-1:]
    return summarize(run_dir)
