"""The components' `run(...)`: resume, refusal, checkpoint selection, export commit and gates."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfpipe.components.continuous_eval import runtime as continuous_eval
from tfpipe.components.evaluate import runtime as evaluate
from tfpipe.components.export import runtime as export
from tfpipe.components import tasks
from tfpipe.components.train import runtime as train
from tfpipe.components.common.thresholds import ThresholdNotMetError
from tfpipe.controller_core import eval_records, restore, run_dir
from tests.support.tiny_runners import checkpoint_steps

FAST = {"batch_size": 32}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits run trained to 300 steps and evaluated continuously (best by accuracy)."""
    model_dir = str(tmp_path_factory.mktemp("run"))
    result = train.run(task="digits", model_dir=model_dir, train_steps=300, steps_per_loop=50,
                       checkpoint_interval=100)
    evaluation = continuous_eval.run(task="digits", model_dir=model_dir, best_metric="accuracy",
                                     best_mode="higher", poll_interval=0.1, idle_timeout=30)
    return model_dir, result, evaluation


def test_train_reaches_accuracy_and_writes_run_directory(trained):
    model_dir, result, evaluation = trained
    assert result.final_step == 300 and result.checkpoint == f"{model_dir}/ckpt-300"
    assert checkpoint_steps(model_dir) == [100, 200, 300]
    stored = run_dir.read_json(f"{model_dir}/run_config.json")  # The effective config: defaults filled in.
    assert stored["task"] == "digits" and stored["task_config"]["batch_size"] == 64 and stored["task_config"]["seed"] == 0
    assert run_dir.read_json(f"{model_dir}/{run_dir.TRAINING_COMPLETE}")["step"] == 300
    assert tf.io.gfile.glob(f"{model_dir}/train/events.out.tfevents.*")
    assert evaluation.evaluated == [100, 200, 300] and evaluation.stop_reason == "training complete at step 300"
    assert evaluation.best["metrics"]["accuracy"] >= 0.9  # The digits example's bar, within 300 CPU steps.
    assert np.array(evaluation.best["metrics"]["confusion_matrix"]).shape == (10, 10)
    assert os.path.exists(f"{model_dir}/eval/validation/report.html")


def test_train_finished_run_does_nothing_and_reports_the_same(trained):
    model_dir, result, _ = trained
    before = sorted(os.listdir(model_dir))
    again = train.run(task="digits", model_dir=model_dir, train_steps=300, steps_per_loop=50, checkpoint_interval=100)
    assert (again.final_step, again.checkpoint) == (300, result.checkpoint)
    assert again.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert sorted(os.listdir(model_dir)) == before


def test_train_resumes_from_latest_checkpoint(tmp_path):
    model_dir = str(tmp_path)
    train.run(task="digits", task_config=FAST, model_dir=model_dir, train_steps=40, steps_per_loop=20,
              checkpoint_interval=20)
    resumed = train.run(task="digits", task_config=json.dumps(FAST), model_dir=model_dir, train_steps=80,
                        steps_per_loop=20, checkpoint_interval=20)
    assert resumed.final_step == 80 and checkpoint_steps(model_dir) == [20, 40, 60, 80]


def test_train_refuses_a_model_dir_of_another_config(tmp_path):
    model_dir = str(tmp_path)
    train.run(task="digits", task_config=FAST, model_dir=model_dir, train_steps=20, steps_per_loop=20,
              checkpoint_interval=20)
    before = {p: os.path.getmtime(os.path.join(model_dir, p)) for p in os.listdir(model_dir)}
    with pytest.raises(ValueError, match=r"`model_dir` \(.*\) was trained with another task config \(task_config\['batch_size'\]: 32 there, 16 here\).*nothing was changed"):
        train.run(task="digits", task_config={"batch_size": 16}, model_dir=model_dir, train_steps=40)
    assert {p: os.path.getmtime(os.path.join(model_dir, p)) for p in os.listdir(model_dir)} == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(train_steps=0), r"`train_steps` must be a positive integer \(at most \d+\), got 0"),
        (dict(steps_per_loop=-1), r"`steps_per_loop` must be a positive integer \(at most \d+\), got -1"),
        (dict(checkpoint_interval="10"), r"`checkpoint_interval` must be a positive integer \(at most \d+\), got '10'"),
        (dict(max_to_keep=0), r"`max_to_keep` must be a positive integer \(at most \d+\), got 0"),
        (dict(distribution_strategy="fast"), r"`distribution_strategy` must be one of \['default', 'mirrored', 'tpu', 'multi_worker_mirrored'\], got 'fast'"),
        (dict(model_dir="s3://bucket/x"), r"`model_dir` \('s3://bucket/x'\) has an unsupported scheme"),
        (dict(model_dir="gs://"), r"`model_dir` \('gs://'\) names no bucket"),
        (dict(model_dir=""), r"`model_dir` must be a gs://bucket/path URI, a /gcs/bucket/path mount path, or a local path, got ''"),
        (dict(task="nope"), r"`task` \('nope'\) is not a registered task"),
        (dict(task_config='{"lr": 1}'), r"unknown key\(s\) \['lr'\]"),
    ],
)
def test_train_input_errors_before_any_work(tmp_path, kwargs, message):
    args = dict(task="digits", model_dir=str(tmp_path / "run"), train_steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        train.run(**args)
    assert not os.path.exists(tmp_path / "run")  # Nothing was written.


def test_custom_task_with_its_own_trainer_and_evaluator(tmp_path):
    task = "tests.support.custom_task:build"
    result = train.run(task=task, model_dir=str(tmp_path), train_steps=6, steps_per_loop=2, checkpoint_interval=2)
    assert result.final_step == 6 and result.metrics["loss"] < 1.0
    evaluated = evaluate.run(task=task, model_dir=str(tmp_path))
    assert evaluated.step == 6 and "eval_loss" in evaluated.record["metrics"]


@pytest.mark.parametrize(
    "checkpoint, step", [("latest", 300), ("best", 300), (200, 200), ("100", 100), ("PATH", 200)]
)
def test_evaluate_checkpoint_selectors(trained, checkpoint, step):
    model_dir = trained[0]
    if checkpoint == "PATH":
        checkpoint = f"{model_dir}/ckpt-200"
    result = evaluate.run(task="digits", model_dir=model_dir, checkpoint=checkpoint, eval_name=f"e-{step}")
    assert result.step == step and result.record["step"] == step
    assert eval_records.EvalRecords(eval_records.eval_dir(model_dir, f"e-{step}")).steps() == [step]


def test_evaluate_reuses_its_record(trained):
    model_dir = trained[0]
    first = evaluate.run(task="digits", model_dir=model_dir, checkpoint=100, eval_name="again")
    second = evaluate.run(task="digits", model_dir=model_dir, checkpoint=100, eval_name="again")
    assert second.record == first.record


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(checkpoint=250), r"`checkpoint` is step 250, but `model_dir` \(.*\) has checkpoints at steps \[100, 200, 300\]"),
        (dict(checkpoint="/no/such/ckpt-5"), r"`checkpoint` \('/no/such/ckpt-5'\) is no checkpoint"),
        (dict(checkpoint="best", best_eval_name="none"), r"`checkpoint` is 'best' but evaluator 'none' has no best checkpoint"),
        (dict(eval_steps=0), r"`eval_steps` must be -1 \(the whole evaluation dataset\) or a positive integer, got 0"),
        (dict(eval_name="a/b"), r"`eval_name` must be a non-empty name of letters, digits"),
    ],
)
def test_evaluate_input_errors(trained, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate.run(task="digits", model_dir=trained[0], **kwargs)


def test_continuous_eval_rejects_unknown_best_metric(trained):
    with pytest.raises(ValueError, match=r"metric 'acc' is not a metric of task 'digits'; its metrics are \['loss', 'accuracy'\]"):
        continuous_eval.run(task="digits", model_dir=trained[0], best_metric="acc")


def test_export_best_with_thresholds_and_export_dir(trained, tmp_path):
    model_dir = trained[0]
    out, serving = str(tmp_path / "model"), str(tmp_path / "serving")
    result = export.run(task="digits", model_dir=model_dir, output_path=out, export_dir=serving,
                        thresholds='{"accuracy": ">= 0.9"}')
    assert result.step == 300 and result.checkpoint.endswith("eval/validation/best/ckpt-300")
    assert result.metrics["accuracy"] >= 0.9 and result.signatures == ["serving_default"]
    assert sorted(os.listdir(f"{serving}/300")) == ["fingerprint.pb", "saved_model.pb", "tfpipe_export.json", "variables"]
    loaded = tf.saved_model.load(out).signatures["serving_default"]
    assert loaded(image=tf.zeros([3, 64]))["probabilities"].shape == (3, 10)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    # A second export of the same step never overwrites the committed version.
    mtime = os.path.getmtime(f"{serving}/300/saved_model.pb")
    export.run(task="digits", model_dir=model_dir, output_path=str(tmp_path / "model2"), export_dir=serving)
    assert os.path.getmtime(f"{serving}/300/saved_model.pb") == mtime


def test_a_missed_threshold_names_the_metric_its_value_and_the_threshold():
    from tfpipe.components.common import thresholds

    parsed = thresholds.parse_thresholds("thresholds", {"accuracy": ">= 0.9", "loss": "< 0.5"})
    assert thresholds.missed_thresholds({"accuracy": 0.8999999, "loss": 0.75}, parsed) == [
        "metric 'accuracy' is 0.8999999, which does not meet its threshold >= 0.9",  # Not "0.9 is not >= 0.9".
        "metric 'loss' is 0.75, which does not meet its threshold < 0.5"]


def test_export_threshold_missed_writes_nothing(trained, tmp_path):
    with pytest.raises(ThresholdNotMetError, match=r"Not exporting step 300: metric 'accuracy' is 0\.9\d+, which does not meet its threshold >= 0\.999\."):
        export.run(task="digits", model_dir=trained[0], output_path=str(tmp_path / "m"),
                   thresholds={"accuracy": ">= 0.999"})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "thresholds, message",
    [('{"accuracy": "0.9"}', r"`thresholds\['accuracy'\]` must be a comparison such as '>= 0.9'"),
     ('{"accuracy": ">= high"}', r"must be a comparison"), ("[1]", r"`thresholds` must be a JSON object")],
)
def test_export_bad_thresholds(trained, tmp_path, thresholds, message):
    with pytest.raises(ValueError, match=message):
        export.run(task="digits", model_dir=trained[0], output_path=str(tmp_path / "m"), thresholds=thresholds)


def test_interrupted_export_commit_is_completed_not_served_half(trained, tmp_path):
    model_dir = trained[0]
    out = str(tmp_path / "model")
    export.run(task="digits", model_dir=model_dir, output_path=out)
    # A crash (a full disk) left a truncated saved_model.pb and no commit marker: not committed, so completed.
    partial = tmp_path / "partial"
    (partial / "variables").mkdir(parents=True)
    (partial / "saved_model.pb").write_bytes((tmp_path / "model" / "saved_model.pb").read_bytes()[:1000])
    task = tasks.build_task("digits", {})
    info = dict(run_dir.read_json(f"{out}/tfpipe_export.json"))
    restore.restore_checked(tf.train.Checkpoint(model=task.model), info["checkpoint"])  # What was exported.
    assert export.commit_export(task, out, str(partial), info) is True
    assert sorted(os.listdir(partial)) == ["fingerprint.pb", "saved_model.pb", "tfpipe_export.json", "variables"]
    tf.saved_model.load(str(partial))
    assert export.commit_export(task, out, str(partial), info) is False  # Committed: nothing is copied again.
    other = {**info, "checkpoint_fingerprint": "0" * 64, "checkpoint": "/elsewhere/ckpt-1"}
    with pytest.raises(ValueError, match=r"already holds another model \(exported from .*ckpt-300 at step 300\); "
                                         r"nothing was overwritten"):
        export.commit_export(task, out, str(partial), other)


def test_binary_task_reports_roc_curve_to_classification_metrics(tmp_path):
    from kfp import dsl

    from tfpipe.components.common import artifacts

    config = {"one_vs_rest": 0}
    train.run(task="digits", task_config=config, model_dir=str(tmp_path), train_steps=100, steps_per_loop=50,
              checkpoint_interval=100)
    result = evaluate.run(task="digits", task_config=config, model_dir=str(tmp_path))
    roc = result.record["metrics"]["roc"]
    assert len(roc["thresholds"]) == len(roc["tpr"]) == len(roc["fpr"]) == 51
    assert roc["tpr"][0] == roc["fpr"][0] == 1.0  # Threshold 0: everything is positive.
    assert roc["fpr"][25] < 0.05 and roc["tpr"][25] > 0.8  # A useful classifier at P = 0.5.
    assert result.task.class_names == ["not 0", "0"]
    metrics = dsl.ClassificationMetrics(name="cm", uri=str(tmp_path / "cm"))
    artifacts.log_to_kfp(result.record, classification_metrics=metrics, class_names=result.task.class_names)
    assert len(metrics.metadata["confidenceMetrics"]) == 51
    assert [a["displayName"] for a in metrics.metadata["confusionMatrix"]["annotationSpecs"]] == ["not 0", "0"]
    assert "roc/tpr" not in artifacts.kfp_metrics(result.record)  # Curves are not scalar Metrics.
