"""The train ∥ continuous-eval → export pipeline: compiled IR per backend, the local run, the CLI."""

import contextlib
import os
import sys

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2

from tfpipe.components.export import runtime as export
from tfpipe.components import specs
from tfpipe.pipelines import cli, submit
from tfpipe.pipelines.local_run import run_local
from tfpipe.pipelines.train_eval_export import build_pipeline


def compile_docs(tmp_path, **kwargs):
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline(**kwargs), str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())  # A valid PipelineSpec.
    return docs


def test_gke_ir_requests_node_pools_retries_and_no_caching(tmp_path):
    docs = compile_docs(tmp_path, backend="gke", image="gcr.io/p/tfpipe:1", profiles={
        "train": "cpu=8,memory=32G,gpu=l4:2,spot", "eval": "cpu=2,memory=8G", "export": "tpu=v5e:2x2"})
    spec, platform = docs
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]
    assert train["image"] == "gcr.io/p/tfpipe:1"
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] == "2"
    assert train["resources"]["cpuLimit"] == 8 and train["resources"]["memoryLimit"] == 32
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-spot": "true"}
    assert {t["key"] for t in k8s["exec-train"]["tolerations"]} == {"nvidia.com/gpu", "cloud.google.com/gke-spot"}
    tpu = [e for n, e in k8s.items() if n.startswith("exec-export")]
    assert tpu and tpu[0]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice", "cloud.google.com/gke-tpu-topology": "2x2"}
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 3
    assert tasks["train"]["cachingOptions"] == {} and tasks["continuous-eval"]["cachingOptions"] == {}
    assert "dependentTasks" not in tasks["continuous-eval"] or "train" not in tasks["continuous-eval"]["dependentTasks"]


def test_vertex_ir_uses_vertex_accelerator_names(tmp_path):
    (spec,) = compile_docs(tmp_path, backend="vertex", image="gcr.io/p/tfpipe:1",
                           profiles={"train": "gpu=a100:4,cpu=24,memory=170G"})
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert train["accelerator"]["resourceType"] == "NVIDIA_TESLA_A100" and train["accelerator"]["resourceCount"] == "4"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backend="gke", profiles={"train": "gpu=k9000:1"}), r"k9000"),
        (dict(backend="gke", profiles={"train": "gpu=l4:3"}), r"3"),
        (dict(backend="gke", profiles={"train": "tpu=v5e:3x3"}), r"3x3"),
        (dict(backend="gke", profiles={"predict": "cpu=1"}), r"unknown step\(s\) \['predict'\]"),
        (dict(backend="aws"), r"`backend` must be one of \['local', 'gke', 'vertex'\], got 'aws'"),
    ],
)
def test_invalid_profiles_fail_before_compiling(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_pipeline(**kwargs)


def test_vertex_tpu_takes_the_custom_job_route(monkeypatch):
    # TPUs on Vertex need a CustomJob (google-cloud-pipeline-components, an optional extra).
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components", None)  # The extra is not installed.
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components.v1.custom_job", None)
    with pytest.raises(ImportError, match=r"pip install 'tfpipe\[vertex-custom-job\]'"):
        build_pipeline(backend="vertex", image="gcr.io/p/tfpipe:1", profiles={"train": "tpu=v5e:2x2"})


def test_cli_compile_and_errors(tmp_path, capsys):
    out = tmp_path / "gke.yaml"
    assert cli.main(["compile", "--backend", "gke", "--image", "reg/tfpipe:2", "--train-resources", "gpu=t4:1",
                     "-o", str(out)]) == 0
    assert "reg/tfpipe:2" in out.read_text() and "nvidia-tesla-t4" in out.read_text()
    assert cli.main(["compile", "--backend", "gke", "--train-resources", "gpu=t4:3", "-o", str(tmp_path / "x")]) == 2
    assert "tfpipe compile:" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "argv, says",
    [
        (["compile", "--backend", "vertex", "--image", "reg/tfpipe:2", "--train-resources", "gpu=l4:1,spot"],
         "pip install 'tfpipe[vertex-custom-job]'"),
        (["compile", "--backend", "gke", "--image", "user:PASSWORD@registry.example.com/tfpipe:1"], "holds credentials"),
        (["compile", "--backend", "gke", "--secret", "creds:../../k=ENV"], "is not a Kubernetes secret key"),
        (["compile", "--backend", "azure"], "invalid choice: 'azure'"),
        (["compile", "--backend", "gke", "-o", "/no/such/folder/p.yaml"], "does not exist"),
        (["compile", "--backend", "gke", "-o", "/proc/self/x.yaml"], "`--output` ('/proc/self/x.yaml') cannot be "
                                                                     "written"),
        (["compile", "--backend", "gke", "-o", "."], "is a folder; give a file name"),
        (["submit", "missing.yaml", "--host", "http://localhost:1"], "is not a file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_user_errors_are_one_line_and_status_2(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components", None)  # The extra is not installed.
    monkeypatch.setitem(sys.modules, "google_cloud_pipeline_components.v1.custom_job", None)
    monkeypatch.chdir(tmp_path)
    if "-o" not in argv and argv[0] == "compile":
        argv = [*argv, "-o", "p.yaml"]
    with pytest.raises(SystemExit) if argv[0] == "frobnicate" or "azure" in argv else contextlib.nullcontext() as exit_:
        status = cli.main(argv)
    status = exit_.value.code if exit_ is not None else status
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and says in err, err
    assert "Traceback" not in err and "PASSWORD" not in err
    assert not (tmp_path / "p.yaml").exists()


def test_compile_bakes_task_and_parameter_defaults_checked_as_submit_checks_them(tmp_path, capsys):
    out = tmp_path / "sine.yaml"
    assert cli.main(["compile", "--backend", "vertex", "--image", "us-docker.pkg.dev/p/ml/sine:1", "--task", "sine",
                     "--task-config", '{"samples": 2048}', "--param", "train_steps=5000",
                     "--param", 'thresholds={"mae": "< 0.1"}', "-o", str(out)]) == 0
    declared = yaml.safe_load(out.read_text())["root"]["inputDefinitions"]["parameters"]
    assert declared["task"]["defaultValue"] == "sine" and declared["train_steps"]["defaultValue"] == 5000
    assert declared["task_config"]["defaultValue"] == '{"samples": 2048}'
    assert declared["thresholds"]["defaultValue"] == '{"mae": "< 0.1"}'
    # A submit without --param runs those defaults; submit's own check accepts the file as it is.
    spec = submit.load_pipeline_package(str(out))[0]
    assert submit.check_parameters(spec, {}, name="arguments") == {}
    capsys.readouterr()


@pytest.mark.parametrize("argv, says", [
    (["--image", "reg/sine:1"], "`image` 'reg/sine:1' is not the tfpipe image, but the pipeline's `task` would "
                                "default to 'digits': set the task your image runs with `tfpipe compile --task NAME`"),
    (["--param", "train_steps=0"], "`train_steps` must be a positive integer"),
    (["--param", "train_steps=many"], "--param train_steps='many' is not an integer"),
    (["--param", "nope=1"], "--param nope: unknown parameter"),
    (["--task", "rm -rf /"], "`task` must be a registered task name"),
    (["--task", "digits", "--param", "task=sine"], "both set task"),
])
def test_compile_defaults_are_refused_in_one_line(argv, says, tmp_path, capsys):
    image = [] if "--image" in argv else ["--image", "reg/tfpipe:2"]
    assert cli.main(["compile", "--backend", "gke", *image, *argv, "-o", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "p.yaml").exists()


def test_an_image_of_your_own_compiles_with_digits_named_explicitly(tmp_path):
    assert cli.main(["compile", "--backend", "gke", "--image", "reg/sine:1", "--task", "digits",
                     "-o", str(tmp_path / "p.yaml")]) == 0


def test_submit_params_keep_the_types_the_pipeline_declares(tmp_path):
    package = tmp_path / "p.yaml"
    assert cli.main(["compile", "--backend", "vertex", "--image", "reg/tfpipe:2", "-o", str(package)]) == 0
    spec = submit.load_pipeline_package(package)[0]
    values = submit.parameters_from_text(spec, {
        "thresholds": '{"rmse": "<= 0.3"}', "task_config": "{}", "train_steps": "500", "poll_interval": "0.5",
        "final_evaluate": "true", "task": "123"})
    assert values == {"thresholds": '{"rmse": "<= 0.3"}', "task_config": "{}", "train_steps": 500,
                      "poll_interval": 0.5, "final_evaluate": True, "task": "123"}
    assert submit.check_parameters(spec, values, name="parameter_values") == values
    with pytest.raises(ValueError, match=r"--param train_steps='many' is not an integer \(NUMBER_INTEGER\)"):
        submit.parameters_from_text(spec, {"train_steps": "many"})
    with pytest.raises(ValueError, match=r"--param nope: unknown parameter"):
        submit.parameters_from_text(spec, {"nope": "1"})


def test_cli_specs(tmp_path, capsys):
    assert cli.main(["specs", "--out", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(f"{name}.yaml" for name in specs.SPEC_NAMES)


@pytest.fixture(scope="module")
def local_summary(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    return run_local(pipeline_root=str(root), train_steps=200, export_dir=str(root / "serving"), final_evaluate=True)


def test_run_local_end_to_end(local_summary):
    s = local_summary
    assert s.final_step == 200 and s.evaluated == 2 and s.skipped == 0
    assert s.best_metrics["accuracy"] >= 0.9 and s.exported
    assert os.path.exists(os.path.join(s.saved_model, "saved_model.pb"))
    assert s.export_path.endswith(f"serving/{s.best_step}") and os.path.exists(f"{s.export_path}/saved_model.pb")
    assert os.path.exists(f"{s.model_dir}/eval/final/records/{s.best_step:012d}.json")  # The final evaluate ran.
    assert open(s.report).read().count('class="chart"') >= 2
    assert any(line.startswith("SavedModel ") and s.saved_model in line for line in s.lines())


@pytest.mark.timeout(900)  # One more local run.
def test_run_local_baseline_gate(local_summary, tmp_path):
    from tfpipe.components.baseline import runtime as baseline_gate

    baseline = local_summary.saved_model
    assert os.path.exists(os.path.join(baseline, export.EXPORT_INFO))
    # The gate step's verdict: strictly better than the baseline's recorded metric, and the thresholds passed. The
    # same model cannot beat itself (the pipeline's verdict for a rerun of the same config).
    accuracy = local_summary.best_metrics["accuracy"]
    verdicts = {(candidate, mode, passed): baseline_gate.beats_baseline(
        {"accuracy": candidate}, baseline, baseline, metric="accuracy", mode=mode, thresholds_passed=passed)
        for candidate in (accuracy, accuracy + 0.001, accuracy - 0.001) for mode in ("higher", "lower")
        for passed in (True, False)}
    assert {key for key, better in verdicts.items() if better} == {
        (accuracy + 0.001, "higher", True), (accuracy - 0.001, "lower", True)}
    # A longer run beats it: the pipeline's gate passes and it exports.
    better = run_local(pipeline_root=str(tmp_path / "b"), train_steps=400, baseline_model_uri=baseline)
    assert better.best_metrics["accuracy"] > accuracy
    assert better.exported


def test_run_local_bad_input_fails_before_running(tmp_path):
    with pytest.raises(ValueError, match=r"`train_steps` must be a positive integer \(at most \d+\), got 0"):
        run_local(pipeline_root=str(tmp_path), train_steps=0)
    with pytest.raises(ValueError, match=r"`thresholds\['accuracy'\]` must be a comparison"):
        run_local(pipeline_root=str(tmp_path), thresholds='{"accuracy": "high"}')
    assert os.listdir(tmp_path) == []


def test_run_local_report_draws_a_chart_per_metric_in_chromium(local_summary, tmp_path):
    import numpy as np
    from PIL import Image

    from tfpipe.components.common import report
    from tests.support import browser, report_page

    chromium = browser.require_chromium()
    page = tmp_path / "report.html"  # The artifact file has no extension; file:// would show it as text.
    page.write_bytes(open(local_summary.report, "rb").read())
    charts = report_page.parse(browser.dump_dom(page, executable=chromium)).charts
    assert set(charts) == {"accuracy", "loss"}  # One chart per scalar metric.
    for name, chart in charts.items():
        assert len(chart.series["eval"].points) == local_summary.evaluated, name
        assert "train" in chart.series, name  # Training reports both: its curve is drawn under the eval points.
    png = browser.screenshot(page, tmp_path / "report.png", executable=chromium)
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    target = np.array([int(report.LINE_COLOR[i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(pixels - target) <= 24).all(axis=-1).sum() > 500  # The lines are drawn.


def test_run_local_cli_is_quiet_and_ends_with_the_failed_steps_own_error_status_2(tmp_path, capsys):
    status = cli.main(["run-local", "--pipeline-root", str(tmp_path / "root"), "--model-dir", str(tmp_path / "run"),
                       "--task", "tests.support.shape_tasks:mismatched", "--train_steps", "10"])
    out, err = capsys.readouterr()
    assert status == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tfpipe run-local: step check-inputs failed: check_inputs: task 'mismatched': one train "
                           "batch (float32[4,2], int64[4]) does not fit the model"), last
    assert "executor_input" not in out and "Got executor_input" not in out and "cuda" not in out.lower()
    assert len(out.splitlines()) < 20, out


def test_run_local_summary_names_the_gate_and_its_own_defaults(local_summary):
    lines = "\n".join(local_summary.lines())
    assert "gate       none (no --thresholds)" in lines
    assert "defaults   run-local's, not the compiled pipeline's: " in lines
    assert "max_to_keep every checkpoint (pipeline: 5)" in lines and "idle_timeout 600.0 (pipeline: 3600.0)" in lines
    assert "train_steps" not in lines.split("defaults")[1]  # Given explicitly: not a default.


def test_run_local_gate_line_says_passed_with_the_thresholds():
    from tfpipe.pipelines import local_run

    values = {"thresholds": '{"accuracy": ">= 0.9"}'}
    assert local_run._gate(values, {"accuracy": 0.95}, 200) == (
        "passed by best step 200: accuracy = 0.95 (thresholds: accuracy >= 0.9)")
    assert local_run._gate(values, {"accuracy": 0.5}, 200) == (
        "missed by best step 200: metric 'accuracy' is 0.5, which does not meet its threshold >= 0.9 "
        "(thresholds: accuracy >= 0.9)")


def test_quiet_run_local_output_tells_a_refusal_from_an_input_error():
    """run-local's quiet filter (pipelines/local_output.py): a step's one-line error is kept and classified; a
    refusal (`<step>: refused: ...`, exit 1) is not an input error (exit 2)."""
    import io

    from tfpipe.pipelines.local_output import QuietOutput

    shown = io.StringIO()
    quiet = QuietOutput(shown)
    quiet.write("Executing task 'export'\nI0000 port.cc:153] oneDNN custom operations are on.\n"
                "export: refused: Not exporting step 200: metric 'accuracy' is 0.5, which does not meet ...\n")
    assert quiet.last_error.startswith("export: refused: Not exporting step 200") and not quiet.input_error
    quiet.write("Executing task 'train-with-tfjob'\ntrain_with_tfjob: `image` is required: The project image.\n")
    assert quiet.last_error.startswith("train_with_tfjob: `image`") and quiet.input_error
    quiet.write("Executing task 'train'\ntrain: retrying (1/3) after: OSError: disk\n")
    assert quiet.last_error is None  # A retry's announcement is no error.
    assert "oneDNN" not in shown.getvalue() and "    export: refused: Not exporting step 200" in shown.getvalue()
