"""The model-dir step of the pipeline: the run directory, given or derived from the pipeline root."""

from typing import NamedTuple


def resolve_model_dir(model_dir: str, pipeline_root: str, job_id: str) -> str:
    """Returns `model_dir`, or `<pipeline_root>/<job_id>/model_dir` when it is empty.

    Args:
        model_dir: The run directory the user gave, or "".
        pipeline_root: The run's pipeline root (KFP's placeholder).
        job_id: The run's job id (KFP's placeholder).
    """
    if model_dir:
        return model_dir.rstrip("/")
    return f"{pipeline_root.rstrip('/')}/{job_id}/model_dir"


def resolve_run_dirs(model_dir: str, pipeline_root: str, job_id: str) -> NamedTuple(
        "RunDirs", [("model_dir", str), ("train_output_dir", str), ("eval_output_dir", str),
                    ("final_output_dir", str)]):
    """The model-dir step of a pipeline with Vertex TensorBoard: the run directory, and each custom job's
    `base_output_directory` under it (`<model_dir>/vertex/train`, `<model_dir>/vertex/eval`, and
    `<model_dir>/vertex/final` for the final evaluation, as gs:// URIs), so that every run (and a resumed one)
    uploads its own TensorBoard logs.

    Args:
        model_dir: The run directory the user gave, or "".
        pipeline_root: The run's pipeline root (KFP's placeholder).
        job_id: The run's job id (KFP's placeholder).
    """
    from tfpipe.components.model_dir.definition import resolve_model_dir

    run_dir = resolve_model_dir(model_dir, pipeline_root, job_id)
    base = "gs://" + run_dir[len("/gcs/"):] if run_dir.startswith("/gcs/") else run_dir
    return run_dir, f"{base}/vertex/train", f"{base}/vertex/eval", f"{base}/vertex/final"
