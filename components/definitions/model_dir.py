"""The model-dir step of the pipeline: the run directory, given or derived from the pipeline root."""


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
