"""What the components share: run-directory machinery (checkpoints, commits, the writer lease, the run config),
data inputs and their fingerprints, evaluation setup, metrics artifacts and the report, Cloud Storage helpers.

One concept per module; none of them is a component (those are the sibling packages `registry` lists).
"""
