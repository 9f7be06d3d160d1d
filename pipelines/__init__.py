"""tfpipe pipelines: pipeline DAGs, per-backend resource profiles, compilation and submission.

`tfpipe.pipelines.dag` holds what a DAG of your own needs to get what the packaged pipeline has (resource
profiles on any task, the retry and caching settings, a train ∥ continuous-eval pair that is safe under kfp.local).
"""

from tfpipe.pipelines import dag

__all__ = ["dag"]
