"""tfpipe benchmarks: scripts, not timed tests.

Run ``python -m bench.run [--quick] [--out bench/results]``; see ``bench/README.md``.
Nothing here is imported by the package or its tests, except ``tests/test_bench.py``,
which runs a tiny configuration of the runner and checks the shape of its output.
"""
