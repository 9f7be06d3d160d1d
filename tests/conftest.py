"""Shared pytest setup: quiet TensorFlow, the GCS emulator fixtures, per-test temp dirs, and the `slow` marker.

`make check` runs `pytest -m "not slow"`: the drift, docs and unit tests of `CHECK_MODULES` (in-process, seconds
each). Every other test is marked `slow` here, as is a test of those modules that uses a fixture of `SLOW_FIXTURES`
(a pipeline run under kfp.local: a process per step) or carries `@pytest.mark.slow` itself. `make test` runs all.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# numpy's OpenBLAS starts a thread per core in every process, and they spin: ~0.4 s of CPU in each of the few
# hundred TensorFlow processes the suite starts (a 20-step digits train: ~7.0 CPU-s instead of ~7.4). No test
# depends on numpy's BLAS running threaded; TensorFlow's own thread pools are untouched.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Before any test imports TensorFlow: the settings the components' entry points and the image give it (GCS
# retries, `tf.keras` as Keras 2), so that in-process tests run as the steps do.
import tfpipe.components  # noqa: E402,F401

pytest_plugins = ["tests.support.fixtures", "tests.support.wheel"]

CHECK_MODULES = frozenset({
    "test_actions.py",
    "test_inputs_table.py",
    "test_interfaces.py",
    "test_kfp_components.py",
    "test_package.py",
    "test_pipelines.py",
    "test_private_internals.py",
    "test_readme.py",
    "test_registry.py",
    "test_resources.py",
    "test_submit.py",
    "test_tasks.py",
    "test_tf_internals.py",
    "test_utils.py",
    "test_vertex_env.py",
})
SLOW_FIXTURES = frozenset({"local_run", "local_summary"})
# The longest modules, longest first (their tests' summed durations in `make test`'s output; test_containers runs
# only where a Docker engine does, as in CI, and is the longest there). pytest-xdist hands out whole modules
# (`--dist loadfile`) in collection order (`--no-loadscope-reorder`): started first, no long module is left for
# one worker to finish alone while the others are idle.
LONGEST_FIRST = (
    "test_containers.py",
    "test_reliability.py",
    "test_own_dag_data.py",
    "test_precision.py",
    "test_preemption.py",
    "test_leases.py",
    "test_pipelines.py",
    "test_entry_points.py",
    "test_gcs_faults.py",
    "test_secrets.py",
    "test_readme_own_dag.py",
    "test_continuous_eval.py",
    "test_user_tasks.py",
    "test_bench.py",
    "test_multi_worker.py",
    "test_data_inputs.py",
    "test_packaging.py",
)
# `-n auto` (`make test`, `make check`): three test processes per core, at most `MAX_WORKERS`. Most tests spend
# much of their time waiting (for a step's process, a poll, a lease), so one per core leaves the cores idle. On 2
# cores, `/usr/bin/time` around the whole suite (a checkout, no container tests) measured 139% CPU and 1005-1216 s
# with `-n 2`; on 2026-12-03 (4407566), 176% and 865 s with `-n 4`, 188% and 745 s with `-n 6`, and 186% and 755 s
# with `-n 8`, where two tests' waits ran out. Each worker and the step process it starts hold up to ~1 GB.
WORKERS_PER_CORE = 3
MAX_WORKERS = 16


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: not part of `make check` (see tests/conftest.py)")


def pytest_ignore_collect(collection_path, config: pytest.Config):
    """Under `-m "not slow"`, modules outside `CHECK_MODULES` are not even imported (they hold only slow tests)."""
    if (config.getoption("markexpr", "") or "").strip() == "not slow" and collection_path.suffix == ".py" and (
            collection_path.name.startswith("test_") and collection_path.name not in CHECK_MODULES):
        return True
    return None


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(WORKERS_PER_CORE * cores, MAX_WORKERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: each module's own order is kept.
    for item in items:
        if (item.path.name not in CHECK_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.get_closest_marker("slow")):
            item.add_marker(pytest.mark.slow)
