"""Multi-worker training on GKE: the train step as a Kubeflow Training Operator v1 `TFJob`, launched and awaited
from a KFP step.

A KFP task is one pod. To train on several machines with MultiWorkerMirroredStrategy, the pipeline's train step
on `backend="gke"` with `train_replicas > 1` (`build_pipeline(..., train_replicas=N)`) is a light launcher pod
that creates a `TFJob` (kubeflow.org/v1) and waits for it:

* `tfReplicaSpecs`: one `Chief` and `N - 1` `Worker` replicas, each a pod of the project image running
  `python -m tfpipe.components.train --distribution_strategy=multi_worker_mirrored --task=... --model_dir=...` (an argument list,
  never a shell string). The operator gives every pod its `TF_CONFIG`; the chief (`strategy.is_chief`) alone
  writes checkpoints, summaries and the completion marker into `model_dir`, the workers save their share of
  each checkpoint into a throwaway local directory.
* Resources: the train step's resource profile (`cpu`, `memory`, `gpu`, `spot`) applies to **every replica
  pod** (CPU/memory requests = limits, `nvidia.com/gpu`, the `cloud.google.com/gke-accelerator` and
  `cloud.google.com/gke-spot` node selectors and the matching tolerations), not to the launcher pod. TPUs are
  refused: TPUStrategy does not run across TFJob replicas.
* Restarts: `restartPolicy: ExitCode` restarts a replica only after a retryable exit status (128 and above: killed
  by a signal, e.g. 143 or 137 after preemption or eviction; 1-127 are permanent failures such as a bad input), up
  to `runPolicy.backoffLimit` restarts; `runPolicy.activeDeadlineSeconds` bounds the job by the launcher's
  `timeout_seconds` even if the launcher is gone. With MultiWorkerMirroredStrategy, losing one replica fails
  the collectives of the others; the whole job then fails, the KFP retry of the train step (`train_retries`)
  starts the launcher again, which replaces the failed TFJob of the same name and every replica resumes from
  the chief's latest checkpoint in `model_dir`. A launcher retried while its TFJob still runs adopts it instead of starting a second one.
* The launcher's outputs are the train component's (`model`, `metrics`, `final_step`, `checkpoint`), read
  from the completion marker the chief wrote, so the step is a drop-in for the train component.

Cluster setup:

* Install the Kubeflow Training Operator v1 (release 1.9, the `TFJob` controller; Kubeflow platform installs
  include it). Kubeflow Trainer v2 has no TensorFlow runtime and does not serve `TFJob`s.
* The launcher runs as the pipeline's service account (`pipeline-runner`, or `default-editor` in a Kubeflow
  profile namespace): it needs `create`, `get` and `delete` on `tfjobs.kubeflow.org` in the namespace (the
  Kubeflow `kubeflow-edit` role grants them). The replicas run as `service_account` (Workload Identity to
  reach `gs://` model_dirs), default: the namespace's default service account.
* Node pools for the replicas as for any GKE step (see `tfpipe.pipelines.resources`). Pods carry
  `sidecar.istio.io/inject: "false"`: an Istio sidecar would keep finished replicas alive and intercept the
  workers' gRPC.
* The continuous-eval step runs beside it as usual, on the same `model_dir`.

`tfjob_manifest(...)` builds the manifest as a plain dict (tested without a cluster); `run_tfjob(api, ...)` does
the create/adopt/replace and the bounded wait against a `kubernetes.client.CustomObjectsApi`.
"""

import copy
import hashlib
import re
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from tfpipe.pipelines import resources

GROUP = "kubeflow.org"
VERSION = "v1"
PLURAL = "tfjobs"
KIND = "TFJob"
# The operator injects TF_CONFIG into the container of this name and opens this port for the cluster.
CONTAINER_NAME = "tensorflow"
PORT_NAME = "tfjob-port"
PORT = 2222
TERMINAL_STATES = ("Succeeded", "Failed")
MAX_NAME_LENGTH = 50  # Pods and services are named `<name>-worker-<i>`: DNS labels of at most 63 characters.
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class TfJobError(RuntimeError):
    """A TFJob that failed, or that could not be created or replaced."""


def train_args(
    *,
    task: str,
    model_dir: str,
    train_steps: int,
    task_config: str = "{}",
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
) -> List[str]:
    """The argument list of `python -m tfpipe.components.train` that every replica runs (one flag per item)."""
    return [
        f"--task={task}",
        f"--task_config={task_config}",
        f"--model_dir={model_dir}",
        f"--train_steps={train_steps}",
        f"--steps_per_loop={steps_per_loop}",
        f"--checkpoint_interval={checkpoint_interval}",
        f"--max_to_keep={max_to_keep}",
        "--distribution_strategy=multi_worker_mirrored",
    ]


def pod_placement(profile: resources.ResourceProfile) -> Tuple[Dict[str, Any], Dict[str, str], List[Dict[str, str]]]:
    """The container resources, node selector and tolerations that give each replica pod `profile` on GKE.

    Args:
        profile: The train step's profile.

    Returns:
        `(resources, node_selector, tolerations)` for the pod spec.

    Raises:
        resources.ResourceProfileError: For a TPU (no TPUStrategy across TFJob replicas) or a profile GKE
            cannot give.
    """
    if profile.tpu is not None:
        raise resources.ResourceProfileError(
            f"resource profile for step {profile.step!r}: tpu={profile.tpu.type}:{profile.tpu.topology} cannot "
            "run as TFJob replicas (TPUStrategy does not span them); accepted: cpu, memory, gpu, spot"
        )
    resources.validate_for_backend(profile, backend="gke")
    amounts: Dict[str, str] = {}
    if profile.cpu is not None:
        amounts["cpu"] = profile.cpu
    if profile.memory is not None:
        amounts["memory"] = profile.memory
    limits: Dict[str, Any] = dict(amounts)
    selector: Dict[str, str] = {}
    tolerations: List[Dict[str, str]] = []
    if profile.gpu is not None:
        limits[resources.GKE_GPU_RESOURCE] = str(profile.gpu.count)
        selector[resources.GKE_GPU_LABEL] = profile.gpu.spec.gke_label
        tolerations.append({"key": resources.GKE_GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if profile.spot:
        selector[resources.GKE_SPOT_LABEL] = "true"
        tolerations.append(
            {"key": resources.GKE_SPOT_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        )
    container_resources = {"requests": amounts, "limits": limits} if limits else {}
    return container_resources, selector, tolerations


def job_name(run_id: str, prefix: str = "tfpipe-train") -> str:
    """A TFJob name for a pipeline run: `<prefix>-<run id>`, lower-cased, at most 50 characters.

    The same run id gives the same name, so a retried launcher finds the job of its earlier attempt. Longer
    names are cut and end in a hash of the whole name, so they stay distinct.

    Raises:
        ValueError: If `prefix` does not start with a lower-case letter, or nothing usable is left.
    """
    if not isinstance(prefix, str) or not re.match(r"^[a-z]", prefix):
        raise ValueError(f"`prefix` must start with a lower-case letter, got {prefix!r}.")
    raw = f"{prefix}-{run_id}".lower()
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME_LENGTH - 9].rstrip('-')}-{digest}"
    return check_name(name)


def check_name(name: Any) -> str:
    """Checks a TFJob name: a DNS-1035 label of at most 50 characters.

    Raises:
        ValueError: Naming the value and what is accepted.
    """
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise ValueError(
            f"`job_name` must be lower-case letters, digits and '-', start with a letter, end with a letter or "
            f"digit, and be at most {MAX_NAME_LENGTH} characters long, got {name!r}."
        )
    return name


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    return value


def _replica_spec(count: int, pod_spec: Mapping[str, Any], labels: Mapping[str, str]) -> Dict[str, Any]:
    return {
        "replicas": count,
        "restartPolicy": "ExitCode",
        "template": {
            "metadata": {"labels": dict(labels), "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": copy.deepcopy(dict(pod_spec)),
        },
    }


def tfjob_manifest(
    *,
    name: str,
    namespace: str,
    image: str,
    task: str,
    model_dir: str,
    train_steps: int,
    task_config: str = "{}",
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
    replicas: int = 2,
    profile: Optional[Any] = None,
    backoff_limit: int = 3,
    active_deadline_seconds: Optional[int] = None,
    service_account: str = "",
    secret_env: Optional[Mapping[str, Mapping[str, str]]] = None,
) -> Dict[str, Any]:
    """Builds the `TFJob` (kubeflow.org/v1) that trains with MultiWorkerMirroredStrategy on `replicas` pods.

    Args:
        name: The TFJob name (see `job_name`).
        namespace: The Kubernetes namespace.
        image: The project image every replica runs.
        task: The task (registered name or `package.module:factory`).
        model_dir: The run directory, shared by all replicas (gs:// on GKE).
        train_steps: The global step to train up to.
        task_config: The task's config, JSON object text.
        steps_per_loop: Steps per inner loop.
        checkpoint_interval: Checkpoint every this many steps.
        max_to_keep: Checkpoints to keep.
        replicas: Pods in all: one `Chief` and `replicas - 1` `Worker`s; at least 2.
        profile: The train step's resource profile (text, mapping or `ResourceProfile`), applied to each pod.
        backoff_limit: Replica restarts (after retryable exits) before the job fails.
        active_deadline_seconds: Stop the job after this long (None: no deadline).
        service_account: The pods' Kubernetes service account (empty: the namespace default).
        secret_env: Kubernetes secrets to expose as environment variables, `{secret: {key: ENV}}` (by
            reference: the manifest holds names only).

    Returns:
        The manifest, ready for `CustomObjectsApi.create_namespaced_custom_object`.

    Raises:
        ValueError: For a bad input, naming it, its value and what is accepted (a `ResourceProfileError` for
            the profile).
    """
    check_name(name)
    for key, value in (("namespace", namespace), ("image", image), ("task", task), ("model_dir", model_dir)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"`{key}` must be a non-empty string, got {value!r}.")
    _check_int("replicas", replicas, 2)
    _check_int("backoff_limit", backoff_limit, 0)
    if active_deadline_seconds is not None:
        _check_int("active_deadline_seconds", active_deadline_seconds, 1)
    args = train_args(task=task, model_dir=model_dir, train_steps=_check_int("train_steps", train_steps, 1),
                      task_config=task_config, steps_per_loop=_check_int("steps_per_loop", steps_per_loop, 1),
                      checkpoint_interval=_check_int("checkpoint_interval", checkpoint_interval, 1),
                      max_to_keep=_check_int("max_to_keep", max_to_keep, 1))
    container_resources, selector, tolerations = pod_placement(resources.parse_profile(profile, step="train"))
    container: Dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": ["python", "-m", "tfpipe.components.train"],
        "args": args,
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
    }
    if container_resources:
        container["resources"] = container_resources
    env = _secret_env_vars(secret_env or {})
    if env:
        container["env"] = env
    pod_spec: Dict[str, Any] = {"containers": [container]}
    if selector:
        pod_spec["nodeSelector"] = selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    labels = {"app.kubernetes.io/managed-by": "tfpipe", "tfpipe/job": name}
    run_policy: Dict[str, Any] = {"backoffLimit": backoff_limit, "cleanPodPolicy": "Running"}
    if active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = active_deadline_seconds
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "runPolicy": run_policy,
            "tfReplicaSpecs": {
                "Chief": _replica_spec(1, pod_spec, labels),
                "Worker": _replica_spec(replicas - 1, pod_spec, labels),
            },
        },
    }


def _secret_env_vars(secret_env: Mapping[str, Mapping[str, str]]) -> List[Dict[str, Any]]:
    """Container `env` entries that read each `{secret: {key: ENV}}` from its secret (`secretKeyRef`)."""
    if not isinstance(secret_env, Mapping):
        raise ValueError(f"`secret_env` must map secret names to {{key: ENV}} mappings, got {secret_env!r}.")
    env = []
    for secret, keys in sorted(secret_env.items()):
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError(f"`secret_env[{secret!r}]` must map secret keys to environment variables, got {keys!r}.")
        for key, variable in sorted(keys.items()):
            env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def job_state(tfjob: Mapping[str, Any]) -> Optional[str]:
    """`Succeeded` or `Failed` once the TFJob has finished, else None (created, running, restarting)."""
    for condition in reversed((tfjob.get("status") or {}).get("conditions") or []):
        if condition.get("type") in TERMINAL_STATES and str(condition.get("status")) == "True":
            return condition["type"]
    return None


def _condition_summary(tfjob: Mapping[str, Any]) -> str:
    conditions = (tfjob.get("status") or {}).get("conditions") or []
    if not conditions:
        return "no conditions yet"
    last = conditions[-1]
    detail = " ".join(str(last[key]) for key in ("reason", "message") if last.get(key))
    return f"{last.get('type')}: {detail}" if detail else str(last.get("type"))


def _is_not_found(error: Exception) -> bool:
    return getattr(error, "status", None) == 404


def _get(api: Any, namespace: str, name: str) -> Optional[Dict[str, Any]]:
    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except Exception as error:  # kubernetes.client.ApiException; 404 means "no such job".
        if _is_not_found(error):
            return None
        raise


def _delete_and_wait(api: Any, namespace: str, name: str, deadline: float, clock: Callable[[], float],
                     sleep: Callable[[float], None], poll_interval: float) -> None:
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                            body={"propagationPolicy": "Foreground"})
    except Exception as error:
        if not _is_not_found(error):
            raise
    while _get(api, namespace, name) is not None:
        if clock() > deadline:
            raise TfJobError(f"TFJob {namespace}/{name} was deleted but is still there after the timeout.")
        sleep(poll_interval)


def run_tfjob(
    api: Any,
    manifest: Mapping[str, Any],
    *,
    timeout_seconds: float,
    poll_interval: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Creates the TFJob of `manifest` (or adopts/replaces one of that name) and waits until it finishes.

    A job of the same name that still runs is adopted (a retried launcher), one that failed is deleted and
    created again (every replica then resumes from the chief's checkpoint), one that succeeded is returned.

    Args:
        api: A `kubernetes.client.CustomObjectsApi` (or anything with its `*_namespaced_custom_object` methods).
        manifest: From `tfjob_manifest`.
        timeout_seconds: How long to wait in all; the job is deleted when it runs out.
        poll_interval: Seconds between looks at the job's status.
        clock: Monotonic seconds (for tests).
        sleep: Sleeps (for tests).
        log: Receives one line per state change.

    Returns:
        The finished TFJob object (state `Succeeded`).

    Raises:
        TfJobError: If the job failed (its last condition is in the message).
        TimeoutError: If it did not finish within `timeout_seconds` (it is deleted first).
    """
    if not timeout_seconds > 0 or not poll_interval > 0:
        raise ValueError(
            f"`timeout_seconds` ({timeout_seconds!r}) and `poll_interval` ({poll_interval!r}) must be > 0."
        )
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    deadline = clock() + timeout_seconds
    existing = _get(api, namespace, name)
    state = job_state(existing) if existing is not None else None
    if existing is not None and state == "Succeeded":
        log(f"tfjob | {namespace}/{name} | already succeeded")
        return existing
    if existing is not None and state == "Failed":
        log(f"tfjob | {namespace}/{name} | replacing the failed job ({_condition_summary(existing)})")
        _delete_and_wait(api, namespace, name, deadline, clock, sleep, poll_interval)
        existing = None
    if existing is None:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(manifest))
        log(f"tfjob | {namespace}/{name} | created")
    else:
        log(f"tfjob | {namespace}/{name} | adopted the running job")
    return _wait(api, namespace, name, deadline, clock, sleep, poll_interval, log)


def _wait(api: Any, namespace: str, name: str, deadline: float, clock: Callable[[], float],
          sleep: Callable[[float], None], poll_interval: float, log: Callable[[str], None]) -> Dict[str, Any]:
    last_summary = None
    while True:
        job = _get(api, namespace, name)
        if job is None:
            raise TfJobError(f"TFJob {namespace}/{name} disappeared while it was awaited (deleted by someone else).")
        summary = _condition_summary(job)
        if summary != last_summary:
            log(f"tfjob | {namespace}/{name} | {summary}")
            last_summary = summary
        state = job_state(job)
        if state == "Succeeded":
            return job
        if state == "Failed":
            raise TfJobError(
                f"TFJob {namespace}/{name} failed ({summary}); see `kubectl logs -n {namespace} {name}-chief-0`."
            )
        if clock() > deadline:
            _delete_and_wait(api, namespace, name, clock() + 10 * poll_interval, clock, sleep, poll_interval)
            raise TimeoutError(
                f"TFJob {namespace}/{name} did not finish within `timeout_seconds`; last state: {summary}. "
                "It was deleted; the checkpoints in model_dir remain for a rerun to resume from."
            )
        sleep(poll_interval)


def current_namespace(path: str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace") -> str:
    """The namespace of the pod this runs in (from its service account mount)."""
    with open(path) as f:
        return f.read().strip()


def train_with_tfjob(
    task: str,
    model_dir: str,
    train_steps: int,
    image: str,
    model: Output[Model],
    metrics: Output[Metrics],
    task_config: str = "{}",
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
    replicas: int = 2,
    resource_profile: str = "",
    run_id: str = "",
    job_name: str = "",
    namespace: str = "",
    service_account: str = "",
    secret_env: str = "{}",
    backoff_limit: int = 3,
    timeout_seconds: int = 604800,
    poll_interval: float = 15.0,
) -> NamedTuple("TrainOutputs", [("final_step", int), ("checkpoint", str)]):
    """Trains on several GKE pods: launches a TFJob (MultiWorkerMirroredStrategy) and waits for it.

    Args:
        task: Registered task name (e.g. `digits`) or `package.module:factory`.
        model_dir: Run directory shared by all replicas and steps (gs://bucket/path).
        train_steps: Global step to train up to.
        image: The project image the replicas run.
        model: Output: points at `model_dir` (metadata: model_dir, final_step, checkpoint).
        metrics: Output: the last train loop's metrics (reduced over all replicas).
        task_config: The task's config as a JSON object.
        steps_per_loop: Steps per inner loop.
        checkpoint_interval: Save a checkpoint every this many steps.
        max_to_keep: Checkpoints to keep.
        replicas: Pods: one chief and `replicas - 1` workers.
        resource_profile: The resource profile of each replica, e.g. `cpu=8,memory=32G,gpu=l4:2,spot`.
        run_id: The pipeline run's id; names the TFJob when `job_name` is empty.
        job_name: The TFJob name (empty: from `run_id`).
        namespace: The namespace (empty: this pod's own).
        service_account: The replicas' service account (empty: the namespace default).
        secret_env: JSON `{secret: {key: ENV}}`: Kubernetes secrets the replicas get as environment variables.
        backoff_limit: Replica restarts after retryable exits before the TFJob fails.
        timeout_seconds: Give up (and delete the TFJob) after this long.
        poll_interval: Seconds between looks at the TFJob.
    """
    import json
    import math
    import os
    from collections import namedtuple

    from kubernetes import client, config

    from tfpipe.pipelines import multi_worker

    config.load_incluster_config()
    manifest = multi_worker.tfjob_manifest(
        name=job_name or multi_worker.job_name(run_id), namespace=namespace or multi_worker.current_namespace(),
        image=image, task=task, model_dir=model_dir, train_steps=train_steps, task_config=task_config,
        steps_per_loop=steps_per_loop, checkpoint_interval=checkpoint_interval, max_to_keep=max_to_keep,
        replicas=replicas, profile=resource_profile, backoff_limit=backoff_limit,
        active_deadline_seconds=timeout_seconds, service_account=service_account, secret_env=json.loads(secret_env),
    )
    multi_worker.run_tfjob(client.CustomObjectsApi(), manifest, timeout_seconds=timeout_seconds,
                           poll_interval=poll_interval)
    final_step, checkpoint, train_metrics = multi_worker.read_result(model_dir, train_steps)
    pointer = {"model_dir": model_dir, "final_step": final_step, "checkpoint": checkpoint}
    model.metadata.update({**pointer, "framework": "tensorflow"})
    os.makedirs(model.path, exist_ok=True)
    with open(os.path.join(model.path, "run.json"), "w") as f:
        json.dump(pointer, f)
    for name, value in sorted(train_metrics.items()):
        if math.isfinite(value):
            metrics.log_metric(name, value)
    metrics.log_metric("step", float(final_step))
    return namedtuple("TrainOutputs", ["final_step", "checkpoint"])(final_step, checkpoint)


def read_result(model_dir: str, train_steps: int) -> Tuple[int, str, Dict[str, float]]:
    """The final step, checkpoint and train metrics from the completion marker the chief wrote in `model_dir`.

    Raises:
        TfJobError: If the TFJob succeeded but `model_dir` holds no completion marker at `train_steps`.
    """
    from tfpipe.components import checkpoints

    marker = checkpoints.read_training_complete(model_dir)
    if marker is None or int(marker.get("step", -1)) < train_steps:
        raise TfJobError(
            f"The TFJob succeeded but `model_dir` ({model_dir}) holds no completion marker at step {train_steps} "
            f"(found: {marker!r}); is `model_dir` on storage all replicas share (gs://)?"
        )
    return int(marker["step"]), str(marker.get("checkpoint") or ""), dict(marker.get("train_output", {}))


def tfjob_train_component(image: str) -> Any:
    """The `train_with_tfjob` launcher as a KFP component running in `image` (the project image)."""
    return dsl.component(train_with_tfjob, base_image=image, install_kfp_package=False)
