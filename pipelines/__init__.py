"""tfpipe pipelines: pipeline DAGs, per-backend resource profiles, compilation and submission."""
