"""The KFP component functions under kfp.local, and the compiled specs in component_specs/."""

import json
import os
import pathlib

import pytest
from kfp import compiler, components, dsl, local

from tfpipe.components import kfp_components
from tfpipe.components import specs

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPEC_NAMES = specs.COMPONENT_NAMES


def executor_output(pipeline_root, task_name):
    (path,) = pathlib.Path(pipeline_root).glob(f"*/{task_name}/executor_output.json")
    return json.loads(path.read_text())


def artifact(output, name):
    return output["artifacts"][name]["artifacts"][0]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """train, continuous_eval, export and evaluate as one pipeline under kfp.local's SubprocessRunner."""
    root = tmp_path_factory.mktemp("pipeline_root")
    model_dir = str(tmp_path_factory.mktemp("run"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))

    ops = kfp_components.components_for_image(kfp_components.LOCAL_IMAGE)

    @dsl.pipeline(name="components-test")
    def pipeline(model_dir: str):
        trained = ops.train(task="digits", model_dir=model_dir, train_steps=200, steps_per_loop=50,
                                          checkpoint_interval=100)
        watched = ops.continuous_eval(
            task="digits", model_dir=model_dir, best_metric="accuracy", best_mode="higher", poll_interval=0.2,
            idle_timeout=120.0, thresholds='{"accuracy": ">= 0.9"}').after(trained)
        exported = ops.export(task="digits", model_dir=model_dir).after(watched)
        ops.evaluate(task="digits", model_dir=model_dir, checkpoint="best").after(exported)

    pipeline(model_dir=model_dir)
    return root, model_dir


def test_train_outputs(local_run):
    root, model_dir = local_run
    out = executor_output(root, "train")
    assert out["parameterValues"] == {"final_step": 200, "checkpoint": f"{model_dir}/ckpt-200"}
    model = artifact(out, "model")
    assert model["metadata"]["model_dir"] == model_dir and model["metadata"]["final_step"] == 200
    assert json.loads(pathlib.Path(model["uri"], "run.json").read_text())["checkpoint"] == f"{model_dir}/ckpt-200"
    metrics = artifact(out, "metrics")["metadata"]
    assert metrics["step"] == 200 and 0 <= metrics["accuracy"] <= 1


def test_continuous_eval_outputs(local_run):
    root, model_dir = local_run
    out = executor_output(root, "continuous-eval")
    params = out["parameterValues"]
    step = params["best_step"]
    assert step in (100, 200) and params["evaluated"] == 2 and params["skipped"] == 0 and params["passed"]
    assert params["best_checkpoint"] == f"{model_dir}/eval/validation/best/ckpt-{step}"
    metrics = artifact(out, "metrics")["metadata"]
    assert metrics["step"] == step and metrics["accuracy"] >= 0.9 and "confusion_matrix" not in metrics
    matrix = artifact(out, "classification_metrics")["metadata"]["confusionMatrix"]
    assert [a["displayName"] for a in matrix["annotationSpecs"]] == [str(d) for d in range(10)]
    assert len(matrix["rows"]) == 10 and all(len(r["row"]) == 10 for r in matrix["rows"])
    assert sum(map(sum, (r["row"] for r in matrix["rows"]))) == 359  # Every evaluation example, once.
    html = pathlib.Path(artifact(out, "report")["uri"]).read_text()
    assert html.count('class="chart"') >= 2 and "<script" not in html


def test_export_outputs(local_run):
    root, _ = local_run
    out = executor_output(root, "export")
    model = artifact(out, "model")
    best_step = executor_output(root, "continuous-eval")["parameterValues"]["best_step"]
    assert model["metadata"]["step"] == best_step and model["metadata"]["signatures"] == ["serving_default"]
    assert model["metadata"]["metrics"]["accuracy"] >= 0.9
    assert (pathlib.Path(model["uri"]) / "saved_model.pb").exists()


def test_evaluate_outputs(local_run):
    root, _ = local_run
    out = executor_output(root, "evaluate")
    assert out["parameterValues"]["step"] == executor_output(root, "continuous-eval")["parameterValues"]["best_step"]
    assert artifact(out, "metrics")["metadata"]["accuracy"] >= 0.9


def test_component_specs_are_up_to_date(tmp_path):
    fresh = specs.write_specs(tmp_path)
    committed = sorted(p.name for p in (ROOT / "component_specs").glob("*.yaml"))
    assert committed == sorted(os.path.basename(p) for p in fresh), (
        f"component_specs/ holds {committed}, components/registry.py names {sorted(specs.SPEC_NAMES)}: run "
        "`tfpipe specs` (and delete the spec of a component that is gone)")
    for path in fresh:
        name = os.path.basename(path)
        assert pathlib.Path(path).read_text() == (ROOT / "component_specs" / name).read_text(), (
            f"component_specs/{name} is stale: run `tfpipe specs`")


def test_specs_load_and_compose_in_a_new_pipeline(tmp_path):
    loaded = {n: components.load_component_from_file(str(ROOT / "component_specs" / f"{n}.yaml")) for n in SPEC_NAMES}
    assert {n: c.component_spec.name for n, c in loaded.items()} == {n: n.replace("_", "-") for n in SPEC_NAMES}

    @dsl.pipeline(name="user-dag")
    def user_dag(model_dir: str):
        trained = loaded["train"](task="digits", model_dir=model_dir, train_steps=100)
        watched = loaded["continuous_eval"](task="digits", model_dir=model_dir)
        with dsl.If(watched.outputs["passed"] == True):  # noqa: E712 (a KFP condition, not Python)
            loaded["export"](task="digits", model_dir=model_dir).after(trained)
        loaded["evaluate"](task="digits", model_dir=model_dir).after(trained)

    compiler.Compiler().compile(user_dag, str(tmp_path / "dag.yaml"))
    text = (tmp_path / "dag.yaml").read_text()
    for name in ("train", "continuous_eval", "export", "evaluate"):  # The components the DAG above uses.
        assert f"comp-{name.replace('_', '-')}" in text
    assert kfp_components.LOCAL_IMAGE in text


def test_components_for_image_rejects_bad_reference():
    with pytest.raises(ValueError, match=r"`image` must be a container image reference .*got 'has space'"):
        kfp_components.components_for_image("has space")
    assert kfp_components.components_for_image("gcr.io/p/x:1").train.component_spec.implementation.container.image == "gcr.io/p/x:1"
