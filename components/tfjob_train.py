"""Multi-worker training on GKE: the train step as a Kubeflow Training Operator v1 `TFJob`, launched and awaited
from a KFP step.

A KFP task is one pod. To train on several machines with MultiWorkerMirroredStrategy, the pipeline's train step
on `backend="gke"` with `train_replicas > 1` is this light launcher step (`component(image)`), which creates a
`TFJob` (kubeflow.org/v1) through the Training Operator's SDK (`kubeflow-training`, `TrainingClient`) and waits
for it:

* `tfReplicaSpecs`: one `Chief` and `N - 1` `Worker` replicas, each a pod of the project image running
  `python -m tfpipe.components.train --distribution_strategy=multi_worker_mirrored --task=... --model_dir=...`
  (an argument list, never a shell string). The operator gives every pod its `TF_CONFIG`; the chief alone writes
  checkpoints, summaries and the completion marker into `model_dir`; the workers save their share of each
  checkpoint into a throwaway local directory.
* Placement: the train step's resource profile applies to **every replica pod**, not to the launcher pod. The
  pipeline computes it when it is compiled (`tfpipe.pipelines.placement.tfjob_placement`: CPU/memory requests =
  limits, `nvidia.com/gpu`, GKE node selectors and tolerations) and passes it here as pod-spec JSON.
* Restarts: `restartPolicy: ExitCode` restarts a replica only after a retryable exit status (128 and above: killed
  by a signal, e.g. 143 or 137 after preemption or eviction; 1-127 are permanent failures such as a bad input), up
  to `runPolicy.backoffLimit` restarts; `runPolicy.activeDeadlineSeconds` bounds the job by the launcher's
  `timeout_seconds` even if the launcher is gone. With MultiWorkerMirroredStrategy, losing one replica fails the
  collectives of the others; the whole job then fails, the KFP retry of the train step starts the launcher again,
  which replaces the failed TFJob of the same name, and every replica resumes from the chief's latest checkpoint
  in `model_dir`. A launcher retried while its TFJob still runs adopts it instead of starting a second one.
* The launcher's outputs are the train component's (`model`, `metrics`, `final_step`, `checkpoint`), read from
  the completion marker the chief wrote, so the step is a drop-in for the train component.

Cluster setup:

* Install the Kubeflow Training Operator v1 (release 1.9, the `TFJob` controller; Kubeflow platform installs
  include it). Kubeflow Trainer v2 has no TensorFlow runtime and does not serve `TFJob`s.
* The launcher runs as the pipeline's service account (`pipeline-runner`, or `default-editor` in a Kubeflow
  profile namespace): it needs `create`, `get` and `delete` on `tfjobs.kubeflow.org` in the namespace (the
  Kubeflow `kubeflow-edit` role grants them). The replicas run as `service_account` (Workload Identity to reach
  `gs://` model_dirs), default: the namespace's default service account.
* Node pools for the replicas as for any GKE step. Pods carry `sidecar.istio.io/inject: "false"`: an Istio
  sidecar would keep finished replicas alive and intercept the workers' gRPC.
* The continuous-eval step runs beside it as usual, on the same `model_dir`.

`tfjob_manifest(...)` builds the TFJob as the SDK's typed model (tested without a cluster); `run_tfjob(client,
job, ...)` does the create/adopt/replace and the bounded wait with a `TrainingClient`, on an injectable clock.
"""

import hashlib
import re
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Union

from kfp import dsl
from kfp.dsl import Metrics, Model, Output
from kubeflow.training import ApiClient, TrainingClient, models
from kubeflow.training.constants import constants
from kubeflow.training.utils import utils as sdk_utils
from kubernetes.client import ApiException

from tfpipe import checks
from tfpipe.components import data as data_lib
from tfpipe.components import train_outputs
from tfpipe.components.definitions.train import INTERFACE as TRAIN
from tfpipe.components.train_outputs import TrainResult

# The operator injects TF_CONFIG into the container of this name; the port is the one it opens for the cluster.
CONTAINER_NAME = constants.TFJOB_CONTAINER
PORT_NAME = "tfjob-port"
PORT = 2222
SUCCEEDED, FAILED = constants.JOB_CONDITION_SUCCEEDED, constants.JOB_CONDITION_FAILED
MAX_NAME_LENGTH = 50  # Pods and services are named `<name>-worker-<i>`: DNS labels of at most 63 characters.
PLACEMENT_KEYS = ("resources", "nodeSelector", "tolerations")


class TfJobError(RuntimeError):
    """A TFJob that failed, or that could not be created or replaced."""


def train_args(train_inputs: Mapping[str, Any]) -> List[str]:
    """The argument list of `python -m tfpipe.components.train` that every replica runs (one flag per item).

    Every train input the launcher was given goes to the replicas (`definitions.train.INTERFACE`, checked
    here first), with `distribution_strategy=multi_worker_mirrored`.

    Raises:
        checks.InputError: For a bad train input, naming it.
    """
    values = {**train_inputs, "distribution_strategy": "multi_worker_mirrored"}
    unknown = sorted(set(values) - set(TRAIN.names(kfp_only=True)))
    if unknown:
        raise checks.InputError(f"{unknown} are not inputs of the train component; its inputs are {TRAIN.names()}.")
    TRAIN.check(values)
    # Data artifacts go to the replicas as `{"uri", "metadata"}` flags: the artifact's gs:// URI, which every pod reads.
    return TRAIN.argv({k: data_lib.check_data_ref(k, v) if k in data_lib.NAMES else v for k, v in values.items()})


def default_job_name(run_id: str, prefix: str = "tfpipe-train") -> str:
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
        checks.InputError: Naming the value and what is accepted.
    """
    return checks.check_dns_label("job_name", name, max_length=MAX_NAME_LENGTH)


def _from_json(data: Any, model: str) -> Any:
    """`data` (Kubernetes JSON) as the SDK's typed `model`, deserialised as `TrainingClient` reads the API."""
    return ApiClient().deserialize(sdk_utils.FakeResponse(data), model)


def _placement(placement: Union[str, Mapping[str, Any], None]) -> Dict[str, Any]:
    """The pod placement JSON (`tfpipe.pipelines.placement.GkePlacement.pod_json`), checked."""
    placement = checks.check_json_object("placement", placement)
    if set(placement) - set(PLACEMENT_KEYS):
        raise checks.InputError(
            f"`placement` must be a JSON object with keys among {list(PLACEMENT_KEYS)}, got {checks.shown(placement)}."
        )
    return placement


def _secret_env_vars(secret_env: Union[str, Mapping[str, Mapping[str, str]], None]) -> List[models.V1EnvVar]:
    """Container `env` entries that read each `{secret: {key: ENV}}` from its secret (`secretKeyRef`)."""
    env = []
    for secret, keys in sorted(checks.check_secret_env("secret_env", secret_env).items()):
        for key, variable in sorted(keys.items()):
            source = models.V1EnvVarSource(secret_key_ref=models.V1SecretKeySelector(name=secret, key=key))
            env.append(models.V1EnvVar(name=variable, value_from=source))
    return env


def tfjob_manifest(
    *,
    name: str,
    namespace: str,
    image: str,
    train_inputs: Mapping[str, Any],
    replicas: int = 2,
    placement: Union[str, Mapping[str, Any], None] = None,
    backoff_limit: int = 3,
    active_deadline_seconds: Optional[int] = None,
    service_account: str = "",
    secret_env: Union[str, Mapping[str, Mapping[str, str]], None] = None,
) -> models.KubeflowOrgV1TFJob:
    """Builds the `TFJob` (kubeflow.org/v1) that trains with MultiWorkerMirroredStrategy on `replicas` pods.

    Args:
        name: The TFJob name (see `job_name`).
        namespace: The Kubernetes namespace.
        image: The project image every replica runs.
        train_inputs: The train component's inputs for every replica (`task`, `model_dir`, `train_steps`, ...;
            `model_dir` must be storage all replicas share, gs:// on GKE).
        replicas: Pods in all: one `Chief` and `replicas - 1` `Worker`s; at least 2.
        placement: Each pod's placement, pod-spec JSON (text or mapping) with keys `resources` (the container's
            ResourceRequirements), `nodeSelector` and `tolerations`: `tfpipe.pipelines.placement.tfjob_placement`.
        backoff_limit: Replica restarts (after retryable exits) before the job fails.
        active_deadline_seconds: Stop the job after this long (None: no deadline).
        service_account: The pods' Kubernetes service account (empty: the namespace default).
        secret_env: Kubernetes secrets to expose as environment variables, `{secret: {key: ENV}}` (mapping or
            JSON text; by reference: the manifest holds names only).

    Returns:
        The TFJob, the SDK's typed model, ready for `TrainingClient.create_job`.

    Raises:
        checks.InputError: For a bad input, naming it, its value and what is accepted.
    """
    check_name(name)
    checks.check_non_empty_text("namespace", namespace)
    checks.check_non_empty_text("image", image)
    checks.check_int_at_least("replicas", replicas, 2)
    checks.check_int_at_least("backoff_limit", backoff_limit, 0)
    if active_deadline_seconds is not None:
        checks.check_int_at_least("active_deadline_seconds", active_deadline_seconds, 1)
    args = train_args(train_inputs)
    pod = _placement(placement)
    env = _secret_env_vars(secret_env)
    labels = {"app.kubernetes.io/managed-by": "tfpipe", "tfpipe/job": name}

    def replica(count: int) -> models.KubeflowOrgV1ReplicaSpec:
        container = models.V1Container(
            name=CONTAINER_NAME, image=image, command=["python", "-m", "tfpipe.components.train"], args=list(args),
            ports=[models.V1ContainerPort(name=PORT_NAME, container_port=PORT)], env=list(env) or None,
            resources=_from_json(pod["resources"], "V1ResourceRequirements") if "resources" in pod else None,
        )
        spec = models.V1PodSpec(
            containers=[container], node_selector=dict(pod.get("nodeSelector") or {}) or None,
            tolerations=[_from_json(t, "V1Toleration") for t in pod.get("tolerations", [])] or None,
            service_account_name=service_account or None,
        )
        metadata = models.V1ObjectMeta(labels=dict(labels), annotations={"sidecar.istio.io/inject": "false"})
        return models.KubeflowOrgV1ReplicaSpec(
            replicas=count, restart_policy="ExitCode", template=models.V1PodTemplateSpec(metadata=metadata, spec=spec)
        )

    return models.KubeflowOrgV1TFJob(
        api_version=constants.API_VERSION,
        kind=constants.TFJOB_KIND,
        metadata=models.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
        spec=models.KubeflowOrgV1TFJobSpec(
            run_policy=models.KubeflowOrgV1RunPolicy(
                backoff_limit=backoff_limit, clean_pod_policy="Running", active_deadline_seconds=active_deadline_seconds
            ),
            tf_replica_specs={"Chief": replica(1), "Worker": replica(replicas - 1)},
        ),
    )


def job_state(job: models.KubeflowOrgV1TFJob) -> Optional[str]:
    """`Succeeded` or `Failed` once the TFJob has finished, else None (created, running, restarting)."""
    for condition in reversed((job.status and job.status.conditions) or []):
        if condition.type in (SUCCEEDED, FAILED) and condition.status == constants.CONDITION_STATUS_TRUE:
            return condition.type
    return None


def _condition_summary(job: models.KubeflowOrgV1TFJob) -> str:
    conditions = (job.status and job.status.conditions) or []
    if not conditions:
        return "no conditions yet"
    last = conditions[-1]
    detail = " ".join(str(text) for text in (last.reason, last.message) if text)
    return f"{last.type}: {detail}" if detail else str(last.type)


def _not_found(error: RuntimeError) -> bool:
    """Whether a `TrainingClient` error is the API's 404 (it wraps the `ApiException` as the cause)."""
    return isinstance(error.__cause__, ApiException) and error.__cause__.status == 404


class _Job:
    """One TFJob through a `TrainingClient`: get (None when absent), create, delete and wait for it to go."""

    def __init__(self, client: TrainingClient, namespace: str, name: str) -> None:
        self.client, self.namespace, self.name = client, namespace, name
        self.label = f"{namespace}/{name}"

    def get(self) -> Optional[models.KubeflowOrgV1TFJob]:
        try:
            return self.client.get_job(self.name, self.namespace, job_kind=constants.TFJOB_KIND)
        except RuntimeError as error:
            if _not_found(error):
                return None
            raise

    def delete_and_wait(self, deadline: float, clock: Callable[[], float], sleep: Callable[[float], None],
                        poll_interval: float) -> None:
        try:
            self.client.delete_job(self.name, self.namespace, job_kind=constants.TFJOB_KIND,
                                   delete_options=models.V1DeleteOptions(propagation_policy="Foreground"))
        except RuntimeError as error:
            if not _not_found(error):
                raise
        while self.get() is not None:
            if clock() > deadline:
                raise TfJobError(f"TFJob {self.label} was deleted but is still there after the timeout.")
            sleep(poll_interval)


def run_tfjob(
    client: TrainingClient,
    job: models.KubeflowOrgV1TFJob,
    *,
    timeout_seconds: float,
    poll_interval: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> models.KubeflowOrgV1TFJob:
    """Creates `job` (or adopts/replaces the TFJob of its name) and waits until it finishes.

    A job of the same name that still runs is adopted (a retried launcher), one that failed is deleted and
    created again (every replica then resumes from the chief's checkpoint), one that succeeded is returned.

    Args:
        client: The Training Operator SDK's `TrainingClient`.
        job: From `tfjob_manifest`.
        timeout_seconds: How long to wait in all; the job is deleted when it runs out.
        poll_interval: Seconds between looks at the job's status.
        clock: Monotonic seconds (for tests).
        sleep: Sleeps (for tests).
        log: Receives one line per state change.

    Returns:
        The finished TFJob (state `Succeeded`).

    Raises:
        TfJobError: If the job failed (its last condition is in the message).
        TimeoutError: If it did not finish within `timeout_seconds` (it is deleted first).
    """
    if not timeout_seconds > 0 or not poll_interval > 0:
        raise checks.InputError(
            f"`timeout_seconds` ({timeout_seconds!r}) and `poll_interval` ({poll_interval!r}) must be > 0."
        )
    target = _Job(client, job.metadata.namespace, job.metadata.name)
    deadline = clock() + timeout_seconds
    existing = target.get()
    state = job_state(existing) if existing is not None else None
    if existing is not None and state == SUCCEEDED:
        log(f"tfjob | {target.label} | already succeeded")
        return existing
    if existing is not None and state == FAILED:
        log(f"tfjob | {target.label} | replacing the failed job ({_condition_summary(existing)})")
        target.delete_and_wait(deadline, clock, sleep, poll_interval)
        existing = None
    if existing is None:
        client.create_job(job=job, namespace=target.namespace)
        log(f"tfjob | {target.label} | created")
    else:
        log(f"tfjob | {target.label} | adopted the running job")
    return _wait(target, deadline, clock, sleep, poll_interval, log)


def _wait(target: _Job, deadline: float, clock: Callable[[], float], sleep: Callable[[float], None],
          poll_interval: float, log: Callable[[str], None]) -> models.KubeflowOrgV1TFJob:
    last_summary = None
    while True:
        job = target.get()
        if job is None:
            raise TfJobError(f"TFJob {target.label} disappeared while it was awaited (deleted by someone else).")
        summary = _condition_summary(job)
        if summary != last_summary:
            log(f"tfjob | {target.label} | {summary}")
            last_summary = summary
        state = job_state(job)
        if state == SUCCEEDED:
            return job
        if state == FAILED:
            raise TfJobError(
                f"TFJob {target.label} failed ({summary}); see `kubectl logs -n {target.namespace} "
                f"{target.name}-chief-0`."
            )
        if clock() > deadline:
            target.delete_and_wait(clock() + 10 * poll_interval, clock, sleep, poll_interval)
            raise TimeoutError(
                f"TFJob {target.label} did not finish within `timeout_seconds`; last state: {summary}. "
                "It was deleted; the checkpoints in model_dir remain for a rerun to resume from."
            )
        sleep(poll_interval)


def read_result(model_dir: str, train_steps: int) -> TrainResult:
    """What the chief reported, from the completion marker it wrote in `model_dir`.

    Raises:
        TfJobError: If the TFJob succeeded but `model_dir` holds no completion marker at `train_steps`.
    """
    from tfpipe.controller_core import run_dir  # TensorFlow: only where the launcher runs.

    marker = run_dir.read_json(f"{model_dir.rstrip('/')}/{run_dir.TRAINING_COMPLETE}")
    if marker is None or int(marker.get("step", -1)) < train_steps:
        raise TfJobError(
            f"The TFJob succeeded but `model_dir` ({model_dir}) holds no completion marker at step {train_steps} "
            f"(found: {marker!r}); is `model_dir` on storage all replicas share (gs://)?"
        )
    return TrainResult(model_dir=model_dir, final_step=int(marker["step"]),
                       checkpoint=str(marker.get("checkpoint") or ""), metrics=dict(marker.get("train_output", {})))


def run_for_kfp(
    *, model: Any, metrics: Any, image: str, replicas: int, placement: str, run_id: str, job_name: str,
    namespace: str, service_account: str, secret_env: str, backoff_limit: int, timeout_seconds: int,
    poll_interval: float, **train_inputs: Any,
) -> tuple:
    """The launcher component's body: runs the TFJob, waits for it, then publishes the train outputs.

    A bad input (`checks.InputError`) ends the step with one line and exit status 2, as in the train component.
    """
    from tfpipe.components import entry_point  # TensorFlow: only where the launcher runs.

    def manifest(in_namespace: str) -> models.KubeflowOrgV1TFJob:
        return tfjob_manifest(
            name=job_name or default_job_name(run_id), namespace=in_namespace, image=image,
            train_inputs=train_inputs, replicas=replicas, placement=placement, backoff_limit=backoff_limit,
            active_deadline_seconds=timeout_seconds, service_account=service_account, secret_env=secret_env,
        )

    @entry_point.exit_on_input_error("train_with_tfjob")
    def launch() -> tuple:
        manifest(namespace or "default")  # Every input is checked before the cluster is contacted.
        client = TrainingClient(job_kind="TFJob")  # In a pod: the in-cluster config and this pod's namespace.
        job = manifest(namespace or client.namespace.strip())
        run_tfjob(client, job, timeout_seconds=timeout_seconds, poll_interval=poll_interval)
        result = read_result(train_inputs["model_dir"], train_inputs["train_steps"])
        return train_outputs.publish(result, model=model, metrics=metrics)

    return launch()


def train_with_tfjob(
    task: str,
    model_dir: str,
    train_steps: int,
    image: str,
    model: Output[Model],
    metrics: Output[Metrics],
    task_config: str = "{}",
    task_package: str = "",
    steps_per_loop: int = 100,
    checkpoint_interval: int = 100,
    max_to_keep: int = 5,
    distribution_strategy: str = "default",
    enable_async_checkpointing: bool = False,
    deterministic: bool = True,
    max_divergence_recoveries: int = 3,
    loss_upper_bound: float = 0.0,
    precision: str = "float32",
    jit_compile: bool = False,
    profile_steps: str = "",
    train_data: dsl.Input[dsl.Dataset] = None,
    eval_data: dsl.Input[dsl.Dataset] = None,
    replicas: int = 2,
    placement: str = "{}",
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

    Takes every input of the train component (each replica gets them; `distribution_strategy` is always
    multi_worker_mirrored there) and these of its own:

    Args:
        image: The project image the replicas run.
        model: Output: points at `model_dir` (metadata: model_dir, final_step, checkpoint).
        metrics: Output: the last train loop's metrics (reduced over all replicas).
        replicas: Pods: one chief and `replicas - 1` workers.
        placement: Each replica pod's resources, node selector and tolerations (pod-spec JSON, from the train
            step's resource profile when the pipeline was compiled).
        run_id: The pipeline run's id; names the TFJob when `job_name` is empty.
        job_name: The TFJob name (empty: from `run_id`).
        namespace: The namespace (empty: this pod's own).
        service_account: The replicas' service account (empty: the namespace default).
        secret_env: JSON `{secret: {key: ENV}}`: Kubernetes secrets the replicas get as environment variables.
        backoff_limit: Replica restarts after retryable exits before the TFJob fails.
        timeout_seconds: Give up (and delete the TFJob) after this long.
        poll_interval: Seconds between looks at the TFJob.
    """
    inputs = dict(locals())  # Before the import below adds a local.
    from tfpipe.components import tfjob_train

    return tfjob_train.run_for_kfp(**inputs)


def component(image: str) -> Any:
    """The `train_with_tfjob` launcher as a KFP component running in `image` (the project image)."""
    return dsl.component(train_with_tfjob, base_image=image, install_kfp_package=False)
