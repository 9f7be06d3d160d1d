"""The project image for real: built from the Dockerfile, an entry point started with `docker run`, the whole
pipeline under `tfpipe run-local --runner docker`, and an image a user derives from it for a task of their own.

The tests that need a Docker engine use the image `$TFPIPE_TEST_IMAGE` (`.ci/run` builds a CPU one on a
registry-free base, see scripts/ci-base-images.sh), else the tag `make image` builds. Without an engine or that
image they skip, saying why; with `CI=true` they fail instead. The rest (how the image, the specs and the command
refer to images) runs everywhere.
"""

import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfpipe.components import kfp_components
from tfpipe.components import specs
from tfpipe.components.common.gcs_retry import gcs_retry_env
from tfpipe.pipelines import cli
from tfpipe.pipelines.local_run import run_local
from tests.support.requirements import unavailable

ROOT = pathlib.Path(__file__).resolve().parents[1]
USER_TASK_PACKAGE = ROOT / "examples" / "regression"  # The README's example task package.
# Steps in the entry-point test run as a user other than root, as they may on a cluster.
STEP_USER = "12345:12345" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
ENGINE_TIMEOUT = pytest.mark.timeout(900)


def _instructions(dockerfile: pathlib.Path):
    """The Dockerfile's instructions as (keyword, argument text), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")))
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            yield keyword.upper(), rest.strip()


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- How the image is made and named (no engine needed) ---------------------------------------------------------


def test_dockerfile_base_is_a_build_argument_and_bakes_the_gcs_retry_settings():
    instructions = list(_instructions(ROOT / "Dockerfile"))
    keywords = [k for k, _ in instructions]
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    assert instructions[keywords.index("FROM")][1] == "${BASE_IMAGE}"
    env = {}
    for keyword, rest in instructions:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    assert {k: v for k, v in env.items() if k.startswith("GCS_")} == gcs_retry_env()
    text = (ROOT / "Dockerfile").read_text()
    # The product image trusts no test-only CA, installs the package (not an editable checkout) and leaves the
    # sources behind.
    assert "ca-certificates" not in text and "PIP_CERT" not in text and " -e " not in text
    assert "rm -rf /tmp/tfpipe-src" in text and ("WORKDIR", "/workdir") in instructions


def test_dockerignore_lets_every_package_folder_into_the_build():
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    folders = set(re.findall(r'^"tfpipe[.\w]*" = "(\w+)"$', (ROOT / "pyproject.toml").read_text(), re.M))
    assert folders and folders <= allowed, folders - allowed
    copied = {rest.split()[0] for keyword, rest in _instructions(ROOT / "Dockerfile") if keyword == "COPY"}
    assert folders <= copied, folders - copied


def test_make_image_builds_the_tag_the_specs_name():
    (default,) = re.findall(r"^IMAGE \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert default == kfp_components.LOCAL_IMAGE == "localhost/tfpipe:0.1.0"
    for name in specs.COMPONENT_NAMES:
        assert f"image: {kfp_components.LOCAL_IMAGE}\n" in specs.spec_text(name)


def test_the_image_installs_the_dependencies_pyproject_declares():
    script = [sys.executable, str(ROOT / "scripts" / "pyproject_requirements.py"), str(ROOT / "pyproject.toml")]
    listed = subprocess.run([*script, "gpu,examples"], capture_output=True, text=True, check=True).stdout.split("\n")
    assert listed[0].startswith("tensorflow>=") and "tensorflow[and-cuda]" in listed and "scikit-learn>=1.3" in listed
    refused = subprocess.run([*script, "examples,cuda"], capture_output=True, text=True)
    assert refused.returncode == 1 and "extras ['cuda'] are not declared" in refused.stderr


def test_specs_retarget_to_any_image(tmp_path, monkeypatch):
    mine = "localhost:5000/team/tfpipe:dev"
    for name in specs.COMPONENT_NAMES:
        assert specs.load_component(name, image=mine).component_spec.implementation.container.image == mine
    assert cli.main(["specs", "--out", str(tmp_path / "ci"), "--image", "localhost/tfpipe:ci"]) == 0
    assert "image: localhost/tfpipe:ci\n" in (tmp_path / "ci" / "train.yaml").read_text()
    # The packaged specs never pick up a user's $TFPIPE_IMAGE when regenerated.
    monkeypatch.setenv("TFPIPE_IMAGE", "registry.example.com/me/tfpipe:1")
    (train,) = [p for p in specs.write_specs(tmp_path / "default") if p.endswith("train.yaml")]
    assert f"image: {kfp_components.LOCAL_IMAGE}\n" in pathlib.Path(train).read_text()


@pytest.mark.parametrize("backend", ["gke", "vertex"])
def test_compiling_for_a_cluster_needs_an_image(backend, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TFPIPE_IMAGE", raising=False)
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "--backend", backend, "-o", str(out)]) == 2
    _one_line_error(capsys, f"`image` is required for backend '{backend}'", "make image IMAGE=", "--image")
    assert not out.exists()
    monkeypatch.setenv("TFPIPE_IMAGE", "registry.example.com/team/tfpipe:7")
    assert cli.main(["compile", "--backend", backend, "-o", str(out)]) == 0
    assert "registry.example.com/team/tfpipe:7" in out.read_text() and "localhost/" not in out.read_text()


def test_runner_docker_without_the_docker_package_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "docker", None)  # The `docker` extra is not installed.
    root = tmp_path / "root"
    assert cli.main(["run-local", "--runner", "docker", "--pipeline-root", str(root)]) == 2
    _one_line_error(capsys, "pip install 'tfpipe[docker]'")
    assert not root.exists()


def test_runner_docker_without_an_engine_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("docker", reason="the `docker` package is not installed (pip install 'tfpipe[docker]')")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    root = tmp_path / "root"
    assert cli.main(["run-local", "--runner", "docker", "--pipeline-root", str(root)]) == 2
    _one_line_error(capsys, "cannot reach a Docker engine")
    assert not root.exists()


# --- The image in a Docker engine ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    """A client of the Docker engine (`docker.from_env()`)."""
    try:
        import docker
    except ImportError:
        unavailable("the `docker` package is not installed (pip install 'tfpipe[docker]')")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        unavailable(f"no Docker engine answers ({str(error).splitlines()[0]}); `scripts/docker-engine.sh start` "
                     "starts one as root")
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(engine):
    """The project image under test: $TFPIPE_TEST_IMAGE, else what `make image` builds."""
    import docker

    name = os.environ.get("TFPIPE_TEST_IMAGE") or kfp_components.LOCAL_IMAGE
    try:
        engine.images.get(name)
    except docker.errors.ImageNotFound:
        unavailable(f"the engine has no image {name}: build it with `make image IMAGE={name}` "
                     "(or set TFPIPE_TEST_IMAGE)")
    return name


@ENGINE_TIMEOUT
def test_the_image_runs_the_installed_package_from_an_empty_folder(engine, image):
    probe = (
        "import json, os, shutil, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('GCS_')}\n"  # Before tfpipe sets defaults.
        "import tfpipe.components\n"
        "print(json.dumps({'cwd': os.getcwd(), 'files': os.listdir('.'), 'tfpipe': tfpipe.components.__file__,\n"
        "                  'env': env, 'python': list(sys.version_info[:2]), 'python3': shutil.which('python3')}))\n"
    )
    out = json.loads(engine.containers.run(image, ["python", "-c", probe], network_mode="host", user=STEP_USER,
                                           remove=True).decode().strip().splitlines()[-1])
    assert out["cwd"] == "/workdir" and out["files"] == []
    assert "site-packages/tfpipe/components" in out["tfpipe"] and out["python3"]
    assert (3, 10) <= tuple(out["python"]) <= (3, 12)
    assert out["env"] == gcs_retry_env()


@ENGINE_TIMEOUT
def test_an_entry_point_runs_with_docker_run(image, tmp_path):
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        unavailable("the `docker` command is not on PATH")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # The step runs as another user.
    subprocess.run(
        [docker_cli, "run", "--rm", "--network", "host", "--user", STEP_USER, "-v", f"{out}:{out}", image,
         "python", "-m", "tfpipe.components.train", "--task=digits", f"--model_dir={out}/run", "--train_steps=60",
         "--steps_per_loop=20", "--checkpoint_interval=20"],
        check=True, timeout=600,
    )
    run = out / "run"
    for step in (20, 40, 60):
        assert (run / f"ckpt-{step}.index").is_file() and (run / f"ckpt-{step}.data-00000-of-00001").is_file()
    assert json.loads((run / "training_complete.json").read_text())["step"] == 60
    assert json.loads((run / "run_config.json").read_text())["task"] == "digits"
    assert list((run / "train").glob("events.out.tfevents.*"))


def _pipeline_outputs(summary, model_dir: pathlib.Path, steps: int):
    """Checks what a finished run left on disk (never the runner's reported status) against its summary."""
    assert summary.model_dir == str(model_dir) and summary.final_step == steps
    assert json.loads((model_dir / "training_complete.json").read_text())["step"] == steps
    records = sorted(model_dir.glob("eval/*/records/*.json"))
    assert [json.loads(r.read_text())["step"] for r in records] == list(range(100, steps + 1, 100))
    assert summary.evaluated == len(records) and summary.exported
    return [json.loads(r.read_text()) for r in records]


@ENGINE_TIMEOUT
def test_a_users_own_dag_runs_in_containers(image, installed, tmp_path):
    """tests/test_own_dag_data.py's project under kfp.local's DockerRunner: its prep and deploy steps and tfpipe's
    components each in a container of the project image; the driver is the installed wheel's python."""
    from tests.test_own_dag_data import _project, _run, assert_deployed_what_it_learned

    work = tmp_path / "work"  # Bound into each container at the same path (the pipeline root is bound by kfp).
    work.mkdir()
    model_dir, report = work / "run", work / "report.json"
    engine_env = {k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}
    _run(installed, _project(tmp_path), "run", str(tmp_path / "root"), str(model_dir), "200", str(report),
         MY_RUNNER="docker", MY_IMAGE=image, MY_MOUNTS=str(work), **engine_env)
    assert_deployed_what_it_learned(report, str(model_dir), 200)


def test_runner_docker_refuses_an_image_the_engine_lacks(engine, tmp_path, capsys):
    root = tmp_path / "root"
    assert cli.main(["run-local", "--runner", "docker", "--image", "localhost/tfpipe-test/absent:0",
                     "--pipeline-root", str(root)]) == 2
    _one_line_error(capsys, "is not in the local Docker engine", "make image IMAGE=localhost/tfpipe-test/absent:0")
    assert not root.exists()


# As the README's "Your own model" section writes it (the base image a build argument here).
DERIVED_DOCKERFILE = """\
ARG TFPIPE_IMAGE
FROM ${TFPIPE_IMAGE}
COPY sine-regression /tmp/sine-regression
# tfpipe and TensorFlow are in the image already (and TensorFlow brings setuptools): nothing is downloaded.
RUN python -m pip install --no-deps --no-build-isolation /tmp/sine-regression && rm -rf /tmp/sine-regression
"""


@ENGINE_TIMEOUT
def test_a_derived_user_image_runs_its_own_regression_task(engine, image, tmp_path):
    """The whole packaged pipeline (`run-local --runner docker`), each step in a container of an image derived from
    the project's, with the run directory and the serving copy outside the pipeline root (bound by tfpipe). The
    project image's own `digits` runs in containers in `test_a_users_own_dag_runs_in_containers`."""
    import docker
    import tensorflow as tf

    context = tmp_path / "context"
    shutil.copytree(USER_TASK_PACKAGE, context / "sine-regression",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    (context / "Dockerfile").write_text(DERIVED_DOCKERFILE)
    digest = hashlib.sha256(engine.images.get(image).id.encode())
    for path in sorted(context.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(context)).encode() + path.read_bytes())
    derived = f"localhost/tfpipe-test/sine:{digest.hexdigest()[:12]}"
    engine.images.build(path=str(context), buildargs={"TFPIPE_IMAGE": image}, tag=derived, network_mode="host",
                        rm=True, forcerm=True)
    root, model_dir, export_dir = tmp_path / "root", tmp_path / "elsewhere" / "run", tmp_path / "serving"
    try:
        with pytest.raises(docker.errors.ContainerError):  # The task comes from the derived image, not the base.
            engine.containers.run(image, ["python", "-c", "import sine_regression"], network_mode="host", remove=True)
        # Its entry point registers `sine`; no metric flags: the task's own mae (lower is better) picks the best.
        summary = run_local(runner="docker", image=derived, task="sine", thresholds='{"mae": "< 0.3"}',
                            train_steps=300, pipeline_root=str(root), model_dir=str(model_dir),
                            export_dir=str(export_dir))
    finally:
        engine.images.remove(derived, force=True)  # Even while the last step container is being auto-removed.
    records = _pipeline_outputs(summary, model_dir, 300)
    assert all("mae" in r["metrics"] and "accuracy" not in r["metrics"] for r in records)
    assert summary.best_metrics["mae"] == min(r["metrics"]["mae"] for r in records) < 0.3
    assert json.loads((model_dir / "run_config.json").read_text())["task"] == "sine"
    assert summary.export_path == f"{export_dir}/{summary.best_step}"
    assert (export_dir / str(summary.best_step) / "saved_model.pb").is_file()
    # The exported model serves without the task's code: its predictions fit the curve.
    serve = tf.saved_model.load(summary.saved_model).signatures["serving_default"]
    x = np.random.default_rng(1).uniform(-np.pi, np.pi, size=(256, 1)).astype(np.float32)
    assert np.mean(np.abs(serve(x=tf.constant(x))["y"].numpy() - np.sin(x))) < 0.3
