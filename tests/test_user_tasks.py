"""A user's own task, as users bring it: a package (examples/regression) installed by `task_package`, a task that is
not a classifier through `tfpipe run-local` with no metric flags, and inputs that can never work refused at once.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tfpipe import checks
from tfpipe.components import tasks
from tfpipe.pipelines import local_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "regression"


@pytest.fixture(scope="module")
def example_wheel(tmp_path_factory) -> pathlib.Path:
    """The example task package, built as a wheel the way its user would (`pip wheel`)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(EXAMPLE)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = out.glob("sine_regression-*.whl")
    return wheel


@pytest.fixture
def package_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFPIPE_TASK_PACKAGE_CACHE", str(tmp_path / "cache"))
    before = list(sys.path)
    yield tmp_path / "cache"
    sys.path[:] = before
    for name in [m for m in sys.modules if m.startswith("sine_regression")]:
        del sys.modules[name]


def test_task_package_installs_from_gcs_and_registers_its_task(example_wheel, package_cache, gcs_emulator,
                                                               gcs_bucket):
    uri = f"{gcs_bucket}/packages/{example_wheel.name}"
    bucket, _, name = uri[len("gs://"):].partition("/")
    gcs_emulator.client().bucket(bucket).blob(name).upload_from_filename(str(example_wheel))
    installed = tasks.install_task_package(uri)
    assert pathlib.Path(installed.site).parent == package_cache
    assert tasks.registered_tasks()["sine"] == "sine_regression.task:build"  # Its entry point, from the wheel.
    task = tasks.build_task("sine", {"samples": 64})
    assert task.best_metric == "mae" and task.best_mode == "lower" and not task.is_classifier
    assert tasks.install_task_package(uri) == installed  # Installed once per file content.


def test_task_package_errors_are_input_errors(example_wheel, package_cache, tmp_path):
    with pytest.raises(checks.InputError, match=r"`task_package` \('.*nowhere-1.0-py3-none-any.whl'\) is not a file"):
        tasks.install_task_package(str(tmp_path / "nowhere-1.0-py3-none-any.whl"))
    with pytest.raises(checks.InputError, match=r"`task_package` \('.*nowhere.whl'\) is not a wheel's file name"):
        tasks.install_task_package(str(tmp_path / "nowhere.whl"))  # Refused by its name, before it is read.
    broken = tmp_path / "broken-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(checks.InputError, match=r"is not a valid wheel: File is not a zip file"):
        tasks.install_task_package(str(broken))


def test_without_a_writable_home_packages_go_to_one_private_folder_removed_at_exit(tmp_path):
    """No cache folder can be made (a read-only home, as in some containers): one folder of the process, mode
    0700, made once however many packages it installs, and gone when the process exits."""
    home = tmp_path / "home"
    home.write_text("")  # A file: ~/.cache cannot be made (even by root, whom a folder's mode does not stop).
    code = ("from tfpipe.components.tasks import packages\n"
            "first, again = packages._cache_root(), packages._cache_root()\n"
            "import os, stat\n"
            "print(first, first == again, oct(stat.S_IMODE(os.stat(first).st_mode)))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "TFPIPE_TASK_PACKAGE_CACHE")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**env, "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    folder, same, mode = out.stdout.split()
    assert same == "True" and mode == "0o700" and "tfpipe-task-packages-" in folder
    assert not os.path.exists(folder)


def test_a_dependency_the_image_lacks_is_named(tmp_path, package_cache):
    project = tmp_path / "needy"
    (project / "needy").mkdir(parents=True)
    (project / "needy" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "needy"\nversion = "1.0"\ndependencies = ["surely-not-installed-anywhere>=1"]\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(project)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("needy-*.whl")
    with pytest.raises(checks.InputError, match=r"needs \['surely-not-installed-anywhere>=1'\], which the image "
                                                r"does not have"):
        tasks.install_task_package(str(wheel))


def test_entry_point_trains_a_task_from_a_task_package_on_gcs(example_wheel, gcs_emulator, gcs_bucket, tmp_path):
    uri = f"{gcs_bucket}/packages/{example_wheel.name}"  # Where a Vertex user keeps a trainer package.
    bucket, _, name = uri[len("gs://"):].partition("/")
    gcs_emulator.client().bucket(bucket).blob(name).upload_from_filename(str(example_wheel))
    env = {**os.environ, **gcs_emulator.env, "TF_CPP_MIN_LOG_LEVEL": "2",
           "TFPIPE_TASK_PACKAGE_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "tfpipe.components.train", "--task=sine", f"--task_package={uri}",
         f"--model_dir={tmp_path / 'run'}", "--train_steps=40", "--steps_per_loop=20", "--checkpoint_interval=20",
         '--task_config={"samples": 256}'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "task_package | installed" in out.stdout and "train | done | step: 40" in out.stdout
    assert "sine_regression" not in subprocess.run(  # It came from the bucket: this interpreter does not have it.
        [sys.executable, "-m", "pip", "list"], capture_output=True, text=True, timeout=120).stdout
    stored = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert stored["task"] == "sine" and stored["task_config"]["samples"] == 256 and stored["task_config"]["seed"] == 0


@pytest.fixture(scope="module")
def regression_run(example_wheel, tmp_path_factory):
    """`tfpipe run-local` of a regression task with no metric flags and no thresholds (the task's defaults)."""
    root = tmp_path_factory.mktemp("regression")
    os.environ["TFPIPE_TASK_PACKAGE_CACHE"] = str(root / "cache")
    try:
        return local_run.run_local(pipeline_root=str(root / "root"), task="sine", task_package=str(example_wheel),
                                   task_config='{"samples": 512}', train_steps=200, max_to_keep=1)
    finally:
        del os.environ["TFPIPE_TASK_PACKAGE_CACHE"]


def test_a_regression_task_runs_through_run_local_and_exports(regression_run):
    s = regression_run
    assert s.final_step == 200 and s.exported and s.saved_model
    assert set(s.best_metrics) == {"loss", "mae"}  # Picked by the task's own metric, mae (lower is better).
    best = json.loads(pathlib.Path(s.model_dir, "eval", "validation", "best", "best.json").read_text())
    assert best["best_metric"] == "mae" and best["best_mode"] == "lower"
    # No confusion matrix for a regression task: its ClassificationMetrics artifact says so and holds none.
    outputs = json.loads(next(pathlib.Path(s.run_dir).glob("continuous-eval/executor_output.json")).read_text())
    metadata = outputs["artifacts"]["classification_metrics"]["artifacts"][0].get("metadata", {})
    assert "confusionMatrix" not in metadata and "not a classifier" in metadata["note"]


def test_run_local_names_checkpoints_deleted_before_the_evaluator_saw_them(regression_run):
    # max_to_keep=1: under kfp.local the evaluator starts after training, when only the last checkpoint is left.
    assert regression_run.never_seen == [100]
    assert "1 deleted by max_to_keep before the evaluator saw them [100]" in "\n".join(regression_run.lines())


def test_a_threshold_on_a_metric_the_task_lacks_is_refused_before_training(example_wheel, tmp_path, capfd):
    os.environ["TFPIPE_TASK_PACKAGE_CACHE"] = str(tmp_path / "cache")
    try:
        with pytest.raises(local_run.LocalRunError, match=r"failed at step check-inputs"):
            local_run.run_local(pipeline_root=str(tmp_path / "root"), task="sine", task_package=str(example_wheel),
                                model_dir=str(tmp_path / "run"), thresholds='{"accuracy": ">= 0.9"}', train_steps=100)
    finally:
        del os.environ["TFPIPE_TASK_PACKAGE_CACHE"]
    err = capfd.readouterr()
    assert "metric 'accuracy' is not a metric of task 'sine'; its metrics are ['loss', 'mae']" in err.out + err.err
    assert not (tmp_path / "run").exists()  # Nothing trained, nothing written.
