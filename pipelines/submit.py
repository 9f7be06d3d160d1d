"""Submitting a compiled pipeline package to open-source KFP or to Vertex AI Pipelines.

Inputs are checked before anything is sent: the package (a compiled `.yaml`/`.yml`/`.json` PipelineSpec), the
run's parameters against the pipeline's declared inputs, and the backend's own formats (KFP host URL; Vertex
project, region, `gs://` pipeline root, labels, service account, network, job id).

Credentials (an `existing_token`, Application Default Credentials) are handed to the client libraries only: they
are never logged, printed or returned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import urllib3
import yaml

from tfpipe import checks
from tfpipe.components import definitions

_LOG = logging.getLogger(__name__)

PACKAGE_SUFFIXES = (".yaml", ".yml", ".json")  # what Vertex reads; kfp.Client reads YAML only
KFP_PACKAGE_SUFFIXES = (".yaml", ".yml")

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_ZONE_RE = re.compile(r"^([a-z]+(-[a-z]+)+[0-9]+)-[a-z]$")
_GCS_URI_RE = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_SERVICE_ACCOUNT_RE = re.compile(r"^[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(\.[a-z0-9-]+)+$")
_NETWORK_RE = re.compile(r"^projects/[0-9]+/global/networks/[a-z]([-a-z0-9]*[a-z0-9])?$")
_JOB_ID_RE = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label (namespaces)
_K8S_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_LABELS = 64
_MAX_LABEL_LENGTH = 63


class SubmitError(RuntimeError):
    """A backend refused or failed a submission."""


@dataclasses.dataclass(frozen=True)
class SubmitResult:
    """What a submission created (or, for a dry run, would create).

    Attributes:
        run_id: The KFP run id, or the Vertex pipeline job id.
        url: Where the run is shown (KFP UI, or the Google Cloud console).
        dry_run: True when nothing was sent.
        request: For a Vertex dry run, the CreatePipelineJob request that would be sent (REST JSON field
            names: `parent`, `pipelineJobId`, `pipelineJob`); None otherwise. It holds no credentials.
    """

    run_id: str
    url: str
    dry_run: bool = False
    request: Mapping[str, Any] | None = None


# --------------------------------------------------------------------------------------------------------------
# The package and its parameters.
# --------------------------------------------------------------------------------------------------------------


def load_pipeline_package(
    package_path: str | Path, *, suffixes: tuple[str, ...] = PACKAGE_SUFFIXES
) -> list[dict[str, Any]]:
    """Reads a compiled pipeline package: the PipelineSpec document, then any platform documents.

    Args:
        package_path: A file written by `kfp.compiler.Compiler`.
        suffixes: The file name endings accepted.

    Returns:
        The documents, the PipelineSpec first.

    Raises:
        checks.InputError: If the file is missing, has another suffix, or holds no PipelineSpec.
    """
    path = Path(package_path)
    if not path.name.endswith(suffixes):
        raise checks.InputError(
            f"package_path {str(package_path)!r} has an unsupported suffix; accepted: a compiled pipeline ending "
            f"in {', '.join(suffixes)}"
        )
    if not path.is_file():
        raise checks.InputError(f"package_path {str(package_path)!r} is not a file; accepted: a compiled pipeline file")
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise checks.InputError(f"package_path {str(package_path)!r} is not YAML/JSON: {error}") from error
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0] or "pipelineInfo" not in docs[0]:
        raise checks.InputError(
            f"package_path {str(package_path)!r} holds no PipelineSpec (no `root`/`pipelineInfo`); accepted: the "
            "output of kfp.compiler.Compiler().compile"
        )
    return docs


_PARAMETER_TYPES: Mapping[str, tuple[tuple[type, ...], str]] = {
    "STRING": ((str,), "a string"),
    "NUMBER_INTEGER": ((int,), "an integer"),
    "NUMBER_DOUBLE": ((int, float), "a number"),
    "BOOLEAN": ((bool,), "a boolean"),
    "LIST": ((list, tuple), "a list"),
    "STRUCT": ((Mapping,), "a mapping"),
}


def check_parameters(spec: Mapping[str, Any], values: Mapping[str, Any] | None, *, name: str) -> dict[str, Any]:
    """Checks run parameters against a PipelineSpec's declared inputs.

    Args:
        spec: The PipelineSpec document (a dict).
        values: Parameter name -> value (JSON-serialisable), or None.
        name: What the caller calls the parameters (`arguments`, `parameter_values`), for errors.

    Returns:
        The parameters as a plain dict.

    Raises:
        checks.InputError: For an unknown parameter, a missing required one, or a value of the wrong type.
    """
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise checks.InputError(f"{name} {values!r} is not a mapping; accepted: {{parameter name: value}}")
    declared: Mapping[str, Any] = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    accepted = ", ".join(declared) or "(none: the pipeline takes no parameters)"
    for key, value in values.items():
        if key not in declared:
            raise checks.InputError(f"{name} has unknown parameter {key!r}; accepted: {accepted}")
        kind = declared[key].get("parameterType", "")
        types_, text = _PARAMETER_TYPES.get(kind, ((object,), "any value"))
        if not isinstance(value, types_) or (isinstance(value, bool) and kind.startswith("NUMBER")):
            raise checks.InputError(f"{name}[{key!r}] = {value!r} has the wrong type; accepted: {text} ({kind})")
    missing = [
        key
        for key, definition in declared.items()
        if key not in values and "defaultValue" not in definition and not definition.get("isOptional", False)
    ]
    if missing:
        raise checks.InputError(f"{name} lacks required parameter(s) {', '.join(missing)}; accepted parameters: {accepted}")
    try:
        json.dumps(dict(values))
    except (TypeError, ValueError) as error:
        raise checks.InputError(f"{name} are not JSON-serialisable ({error}); accepted: JSON values") from error
    return dict(values)


def parameters_from_text(spec: Mapping[str, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    """Converts parameters given as text (`tfpipe submit --param k=v`) to the types the pipeline declares.

    A STRING parameter keeps its text as it is (`thresholds={"rmse": "<= 0.3"}` stays a string); integers,
    numbers and booleans are parsed as such; LIST and STRUCT parameters are parsed as JSON.

    Args:
        spec: The PipelineSpec document.
        texts: Parameter name -> text.

    Returns:
        Parameter name -> typed value (then checked by `check_parameters`).

    Raises:
        checks.InputError: For an unknown parameter, or text that is not a value of the declared type.
    """
    declared: Mapping[str, Any] = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    values: dict[str, Any] = {}
    for key, text in texts.items():
        if key not in declared:
            raise checks.InputError(f"--param {key}: unknown parameter; accepted: {', '.join(declared) or '(none)'}")
        kind = declared[key].get("parameterType", "STRING")
        try:
            if kind == "STRING":
                values[key] = text
            elif kind == "NUMBER_INTEGER":
                values[key] = int(text)
            elif kind == "NUMBER_DOUBLE":
                values[key] = float(text)
            elif kind == "BOOLEAN":
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                values[key] = text.lower() == "true"
            else:
                values[key] = json.loads(text)
        except ValueError:
            accepted = _PARAMETER_TYPES.get(kind, ((object,), "a JSON value"))[1]
            raise checks.InputError(f"--param {key}={text!r} is not {accepted} ({kind})") from None
    return values


def check_tfpipe_values(spec: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """For a pipeline tfpipe compiled: checks each parameter's value (given, else compiled) with the check of the
    component input it feeds, and the rules between inputs, as check-inputs and the steps would, before a run
    exists. Other pipelines' parameters are left to them.

    Raises:
        checks.InputError: Naming the input and the value.
    """
    from tfpipe.pipelines import train_eval_export

    if spec.get("pipelineInfo", {}).get("name") != train_eval_export.PIPELINE_NAME:
        return
    declared: Mapping[str, Any] = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    effective = {key: int(d["defaultValue"]) if d.get("parameterType") == "NUMBER_INTEGER" else d["defaultValue"]
                 for key, d in declared.items() if "defaultValue" in d}  # The YAML holds integers as floats.
    effective.update(values)
    inputs = {item.name: item for item in train_eval_export.PIPELINE_INPUTS}
    checked = {}
    for key, value in effective.items():
        if key in inputs and not (key == "model_dir" and value == ""):  # "": the pipeline's model-dir step picks one.
            checked[key] = inputs[key].validate(value)
    for component in (definitions.TRAIN, definitions.CONTINUOUS_EVAL, definitions.EXPORT):
        component.check_relations(checked)


def _check_optional_text(name: str, value: str | None, *, max_length: int = 1024) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > max_length
                              or not value.isprintable()):
        raise checks.InputError(f"{name} {value!r} is invalid; accepted: a non-empty string of at most {max_length} "
                         "printable characters, on one line")


def _check_optional_bool(name: str, value: bool | None) -> None:
    if value is not None and not isinstance(value, bool):
        raise checks.InputError(f"{name} {value!r} is not a boolean; accepted: True, False or None")


# --------------------------------------------------------------------------------------------------------------
# Open-source KFP.
# --------------------------------------------------------------------------------------------------------------


def check_kfp_host(host: str) -> str:
    """Checks a KFP API host URL and returns it without a trailing slash.

    Args:
        host: `http://` or `https://` URL of the KFP API (e.g. `http://localhost:8080`).

    Raises:
        checks.InputError: If the URL has another scheme, no host, embedded credentials, a query or a fragment.
    """
    parsed = urllib.parse.urlsplit(host) if isinstance(host, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise checks.InputError(f"host {host!r} is not an http(s) URL; accepted: e.g. http://localhost:8080")
    if parsed.username is not None or parsed.password is not None:
        # Echo the URL without its credentials.
        raise checks.InputError(
            f"host {parsed.scheme}://***@{parsed.hostname} embeds credentials; accepted: a URL without user "
            "info (pass a bearer token as existing_token)"
        )
    if parsed.query or parsed.fragment:
        raise checks.InputError(f"host {host!r} has a query or fragment; accepted: scheme://host[:port][/path]")
    return host.rstrip("/")


def submit_to_kfp(
    package_path: str | Path,
    *,
    host: str,
    arguments: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    experiment_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
    service_account: str | None = None,
    existing_token: str | None = None,
) -> SubmitResult:
    """Submits a compiled pipeline to an open-source KFP backend (API v2beta1) as a new run.

    Uses `kfp.Client(host=...).create_run_from_pipeline_package`: the experiment is looked up by name and
    created when missing; the run carries the PipelineSpec and, for GKE-compiled packages, the kfp-kubernetes
    platform spec.

    Args:
        package_path: The compiled pipeline (`.yaml` or `.yml`).
        host: The KFP API URL, e.g. `http://localhost:8080` (a port-forward) or an ingress URL.
        arguments: Pipeline parameters, checked against the pipeline's inputs.
        run_name: The run's display name (KFP defaults to the file name and a timestamp).
        experiment_name: The experiment (KFP defaults to `Default`).
        namespace: Kubernetes namespace, for multi-user deployments.
        enable_caching: Overrides every task's caching setting when not None.
        service_account: Kubernetes service account the run's pods use.
        existing_token: A bearer token for the API (sent as `Authorization`, never logged or returned).

    Returns:
        The run id and its UI link `{host}/#/runs/details/{run_id}`.

    Raises:
        checks.InputError: For a bad input, naming it.
        SubmitError: If the KFP API is unreachable or refuses the run.
    """
    docs = load_pipeline_package(package_path, suffixes=KFP_PACKAGE_SUFFIXES)
    host = check_kfp_host(host)
    params = check_parameters(docs[0], arguments, name="arguments")
    check_tfpipe_values(docs[0], params)
    _check_optional_text("run_name", run_name)
    _check_optional_text("experiment_name", experiment_name)
    _check_optional_bool("enable_caching", enable_caching)
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _K8S_NAME_RE.match(namespace)
    ):
        raise checks.InputError(f"namespace {namespace!r} is invalid; accepted: a Kubernetes namespace name (RFC 1123 label)")
    if service_account is not None and (
        not isinstance(service_account, str)
        or len(service_account) > 253
        or not _K8S_SUBDOMAIN_RE.match(service_account)
    ):
        raise checks.InputError(f"service_account {service_account!r} is invalid; accepted: a Kubernetes service account name")
    if existing_token is not None and (not isinstance(existing_token, str) or not existing_token.strip()):
        raise checks.InputError("existing_token is empty or not a string; accepted: a non-empty bearer token")

    client_options: dict[str, Any] = {"host": host, "existing_token": existing_token}
    if namespace is not None:
        client_options["namespace"] = namespace
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This client only works", category=FutureWarning)
            client = kfp.Client(**client_options)
        result = client.create_run_from_pipeline_package(
            str(package_path),
            arguments=params,
            run_name=run_name,
            experiment_name=experiment_name,
            namespace=namespace,
            enable_caching=enable_caching,
            service_account=service_account,
        )
    except kfp_server_api.ApiException as error:
        body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else str(error.body or "")
        raise SubmitError(f"KFP at {host} refused the run: HTTP {error.status} {error.reason}: {body[:500]}") from error
    except urllib3.exceptions.HTTPError as error:  # connection refused, DNS, TLS: raised past kfp.Client
        raise SubmitError(f"KFP at {host} is unreachable: {error}; accepted: the URL of a running KFP API") from error
    url = f"{host}/#/runs/details/{result.run_id}"
    _LOG.info("Submitted KFP run %s: %s", result.run_id, url)
    return SubmitResult(run_id=result.run_id, url=url)


# --------------------------------------------------------------------------------------------------------------
# Vertex AI Pipelines.
# --------------------------------------------------------------------------------------------------------------


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Checks resource labels against Google Cloud's label rules.

    Keys: 1-63 characters, starting with a lowercase letter; keys and values: lowercase letters, digits, `_` and
    `-` only (international lowercase letters allowed); values: at most 63 characters (may be empty); at most 64
    labels.

    Args:
        labels: Label key -> value, or None.

    Returns:
        The labels as a plain dict.

    Raises:
        checks.InputError: Naming the first bad key or value and the rule.
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise checks.InputError(f"labels {labels!r} is not a mapping; accepted: {{key: value}} strings")
    if len(labels) > _MAX_LABELS:
        raise checks.InputError(f"labels has {len(labels)} entries; accepted: at most {_MAX_LABELS}")

    def allowed(text: str) -> bool:
        return all(ch.islower() or ch.isdigit() or ch in "_-" for ch in text)

    for key, value in labels.items():
        if (
            not isinstance(key, str)
            or not 1 <= len(key) <= _MAX_LABEL_LENGTH
            or not key[0].islower()
            or not allowed(key)
        ):
            raise checks.InputError(
                f"label key {key!r} is invalid; accepted: 1-63 lowercase letters, digits, '_' or '-', starting "
                "with a lowercase letter"
            )
        if not isinstance(value, str) or len(value) > _MAX_LABEL_LENGTH or not allowed(value):
            raise checks.InputError(
                f"label value {value!r} (key {key!r}) is invalid; accepted: 0-63 lowercase letters, digits, '_' or '-'"
            )
    return dict(labels)


def check_vertex_location(*, project: str, region: str, pipeline_root: str) -> None:
    """Checks a Vertex project id, region and pipeline root.

    Raises:
        checks.InputError: Naming the bad value and the accepted format.
    """
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        raise checks.InputError(
            f"project {project!r} is not a Google Cloud project id; accepted: 6-30 lowercase letters, digits or "
            "hyphens, starting with a letter and not ending with a hyphen (e.g. my-project-123)"
        )
    if not isinstance(region, str) or not _REGION_RE.match(region):
        zone = _ZONE_RE.match(region) if isinstance(region, str) else None
        hint = f" (that looks like a zone; its region is {zone.group(1)!r})" if zone else ""
        raise checks.InputError(f"region {region!r} is not a Google Cloud region{hint}; accepted: e.g. us-central1")
    if not isinstance(pipeline_root, str) or not _GCS_URI_RE.match(pipeline_root):
        raise checks.InputError(
            f"pipeline_root {pipeline_root!r} is not a Cloud Storage URI; accepted: gs://<bucket>[/<path>] "
            "(Vertex AI Pipelines writes artifacts to Cloud Storage)"
        )


def vertex_console_url(*, project: str, region: str, job_id: str) -> str:
    """Returns the Google Cloud console URL of a Vertex pipeline run."""
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job_id}?project={project}"


def submit_to_vertex(
    package_path: str | Path,
    *,
    project: str,
    region: str,
    pipeline_root: str,
    parameter_values: Mapping[str, Any] | None = None,
    service_account: str | None = None,
    labels: Mapping[str, str] | None = None,
    enable_caching: bool | None = None,
    display_name: str | None = None,
    job_id: str | None = None,
    network: str | None = None,
    dry_run: bool = False,
) -> SubmitResult:
    """Submits a compiled pipeline to Vertex AI Pipelines (`google.cloud.aiplatform.PipelineJob`).

    Needs the optional `google-cloud-aiplatform` package (`pip install tfpipe[vertex]`) and, unless `dry_run`,
    Application Default Credentials.

    Args:
        package_path: The compiled pipeline (`.yaml`, `.yml` or `.json`), compiled for the vertex backend (one
            document; Vertex cannot read the kfp-kubernetes platform document of a GKE compile).
        project: Google Cloud project id.
        region: Vertex region, e.g. `us-central1`.
        pipeline_root: `gs://` URI under which Vertex writes the run's artifacts.
        parameter_values: Pipeline parameters, checked against the pipeline's inputs.
        service_account: Service account email the run's tasks act as.
        labels: Resource labels (Google Cloud label rules).
        enable_caching: Overrides every task's caching setting when not None.
        display_name: The run's display name (default: the pipeline's name).
        job_id: The pipeline job id (default: pipeline name and a timestamp); unique per project and region.
        network: VPC to peer, `projects/<project number>/global/networks/<name>`.
        dry_run: Build the request and return it without calling the API (no credentials needed).

    Returns:
        The job id and console URL; for a dry run also `request`, the CreatePipelineJob request.

    Raises:
        checks.InputError: For a bad input, naming it.
        checks.MissingExtraError: If google-cloud-aiplatform is not installed.
        SubmitError: If Vertex AI refuses the job.
    """
    docs = load_pipeline_package(package_path)
    if len(docs) > 1:
        raise checks.InputError(
            f"package_path {str(package_path)!r} has {len(docs) - 1} platform document(s) after the PipelineSpec "
            "(kfp-kubernetes settings of a gke compile); accepted on Vertex: a single-document package, compiled "
            "with --backend vertex"
        )
    check_vertex_location(project=project, region=region, pipeline_root=pipeline_root)
    params = check_parameters(docs[0], parameter_values, name="parameter_values")
    check_tfpipe_values(docs[0], params)
    label_map = check_labels(labels)
    _check_optional_bool("enable_caching", enable_caching)
    _check_optional_bool("dry_run", dry_run)
    _check_optional_text("display_name", display_name, max_length=128)
    if service_account is not None and (
        not isinstance(service_account, str) or not _SERVICE_ACCOUNT_RE.match(service_account)
    ):
        raise checks.InputError(
            f"service_account {service_account!r} is not a service account email; accepted: e.g. "
            "trainer@my-project.iam.gserviceaccount.com"
        )
    if job_id is not None and (not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id)):
        raise checks.InputError(
            f"job_id {job_id!r} is invalid; accepted: 1-128 lowercase letters, digits or hyphens, starting with a "
            "letter"
        )
    if network is not None and (not isinstance(network, str) or not _NETWORK_RE.match(network)):
        raise checks.InputError(
            f"network {network!r} is invalid; accepted: projects/<project number>/global/networks/<network name>"
        )

    aiplatform = checks.import_extra("google.cloud.aiplatform", extra="vertex", needed_for="Submitting to Vertex AI")
    from google.auth import credentials as auth_credentials  # google-cloud-aiplatform's dependency.

    job = aiplatform.PipelineJob(
        display_name=display_name or docs[0]["pipelineInfo"]["name"],
        template_path=str(package_path),
        job_id=job_id,
        pipeline_root=pipeline_root,
        parameter_values=params,
        enable_caching=enable_caching,
        labels=label_map or None,
        project=project,
        location=region,
        # A dry run must not look for Application Default Credentials: nothing is sent.
        credentials=auth_credentials.AnonymousCredentials() if dry_run else None,
    )
    url = vertex_console_url(project=project, region=region, job_id=job.job_id)
    if dry_run:
        return SubmitResult(
            run_id=job.job_id,
            url=url,
            dry_run=True,
            request=_create_request(
                job, project=project, region=region, service_account=service_account, network=network
            ),
        )
    try:
        job.submit(service_account=service_account, network=network)
    except Exception as error:  # google.api_core errors, auth errors: surface them with the job named.
        raise SubmitError(f"Vertex AI refused pipeline job {job.job_id!r} in {project}/{region}: {error}") from error
    _LOG.info("Submitted Vertex pipeline job %s: %s", job.job_id, url)
    return SubmitResult(run_id=job.job_id, url=url)


# google-cloud-aiplatform versions whose `PipelineJob._gca_resource` (private) `pipeline_job_resource` was checked
# against; tests/test_private_internals.py fails on another installed version, so that a change is noticed.
AIPLATFORM_CHECKED_VERSIONS = ("1.165",)


def pipeline_job_resource(job: Any) -> Any:
    """The `PipelineJob` proto-plus resource an `aiplatform.PipelineJob` would create (its private `_gca_resource`).

    Raises:
        SubmitError: If this google-cloud-aiplatform version does not have it (dry runs are then unsupported).
    """
    resource = getattr(job, "_gca_resource", None)
    if resource is None:
        raise SubmitError("this google-cloud-aiplatform version hides the PipelineJob resource; dry_run is unsupported")
    return resource


def _create_request(
    job: Any, *, project: str, region: str, service_account: str | None, network: str | None
) -> dict[str, Any]:
    """The CreatePipelineJob request `PipelineJob.submit` would send, as REST JSON.

    `PipelineJob.submit` sets the service account and network on the job's resource and then calls the API; the
    resource is not public before it exists, so this reads it as `submit` does (`pipeline_job_resource`).
    """
    from google.protobuf import json_format

    resource = pipeline_job_resource(job)
    message = type(resource).pb(resource)
    pipeline_job = type(message)()
    pipeline_job.CopyFrom(message)
    if service_account:
        pipeline_job.service_account = service_account
    if network:
        pipeline_job.network = network
    return {
        "parent": f"projects/{project}/locations/{region}",
        "pipelineJobId": job.job_id,
        "pipelineJob": json_format.MessageToDict(pipeline_job),
    }
