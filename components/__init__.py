"""tfpipe's KFP components (train, evaluate, continuous_eval, export) and what they share.

Each component is one `run(...)` function, started either by KFP (a lightweight
Python component running in the project image) or from a shell with
`python -m components.<name> --flag=value ...`.
"""
