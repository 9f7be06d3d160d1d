"""The benchmark runner works end to end (a tiny configuration) and writes the documented output.

A functional test, not a timing test: it asserts the shape of ``latest.json`` and that ratios are positive,
never how fast anything is. Orbit is compared only when ``bench/.orbit-pkgs`` is already installed (the test
never downloads).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_runner_writes_json_markdown_and_plot(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--preset", "tiny", "--parts", "controller_overhead",
         "--orbit", "if-present", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=290,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    document = json.loads((out / "latest.json").read_text())
    for key in ("schema_version", "command", "preset", "wall_s", "environment", "goals", "parts",
                "controller_vs_raw", "controller_vs_orbit", "failed_parts"):
        assert key in document, key
    assert document["preset"] == "tiny"
    assert document["failed_parts"] == []

    part = document["parts"]["controller_overhead"]
    spls = [str(s) for s in part["settings"]["spls"]]
    assert set(document["controller_vs_raw"]) == set(spls)
    assert all(ratio > 0 for ratio in document["controller_vs_raw"].values())
    if part["orbit"]["available"]:
        assert set(document["controller_vs_orbit"]) == set(spls)
        assert all(ratio > 0 for ratio in document["controller_vs_orbit"].values())
    else:
        assert document["controller_vs_orbit"] == {}
        assert part["orbit"]["reason"]

    # Raw numbers are there: per candidate, mode and steps_per_loop, positive medians and per-round samples.
    for candidate in part["candidates"]:
        for spl in spls:
            assert part["steps_per_s"][candidate]["none"][spl]["median"] > 0
            rows = part["samples"][candidate]["none"][spl]
            assert len(rows) == part["settings"]["reps"]
            assert all(row["steps"] == part["settings"]["steps"][spl] and row["seconds"] > 0 for row in rows)
    assert set(part["goals"]) == {"controller_vs_raw", "controller_vs_orbit"}

    markdown = (out / "latest.md").read_text()
    assert "Controller overhead" in markdown and "controller/raw" in markdown
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert document["plot"] is None and "matplotlib" in document["plot_skipped"]
    else:
        assert document["plot"] == "latest.png"
        assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_registry_lists_every_part():
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    names = [line.split(":")[0] for line in done.stdout.splitlines()]
    assert names == ["controller_overhead", "checkpoint_io", "cold_start", "continuous_eval", "accelerators"]


@pytest.mark.timeout(300)
def test_continuous_eval_part_writes_its_schema(tmp_path):
    """Part 4 end to end at the tiny preset (a trainer and one evaluator per candidate, local disk): shape only."""
    out = tmp_path / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--preset", "tiny", "--parts", "continuous_eval", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=290,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((out / "latest.json").read_text())
    assert document["failed_parts"] == []
    assert set(document["goals"]["continuous_eval"]) == {"checkpoint_noticed", "exit_after_training"}

    part = document["parts"]["continuous_eval"]
    candidates = part["settings"]["configs"][part["headline_config"]]
    # Headline numbers at the top level, one per candidate; per-config summaries and raw samples below.
    assert set(part["noticed_median_s"]) == set(candidates) == set(part["exit_delay_s"])
    assert all(isinstance(v, float) for v in part["noticed_median_s"].values())
    assert all(v > 0 for v in part["exit_delay_s"].values())
    for config, config_candidates in part["settings"]["configs"].items():
        for candidate in config_candidates:
            stats = part["by_config"][config][candidate]
            for key in ("noticed_median_s", "noticed_max_s", "evaluated", "saved", "exit_delay_s",
                        "loop_end_delay_s", "teardown_s", "polls_per_s", "watch_cpu_share"):
                assert key in stats, (config, candidate, key)
            assert stats["all_exited"] and stats["errors"] == []
            rows = part["samples"][config][candidate]
            assert len(rows) == part["settings"]["reps"]
            for row in rows:
                assert row["saved"] == part["settings"]["checkpoints"] == len(row["per_checkpoint"])
                assert row["final_evaluated"]  # Both stop rules need the final checkpoint evaluated.
                if candidate.startswith("controller"):  # Policy "all": every checkpoint, whatever the timing.
                    assert row["evaluated_steps"] == list(range(1, row["saved"] + 1))
    assert set(part["goals"]) == {"checkpoint_noticed", "exit_after_training"}
    markdown = (out / "latest.md").read_text()
    assert "Continuous-eval latency" in markdown and "noticed median" in markdown


@pytest.mark.timeout(480)
def test_accelerators_part_compares_precisions_and_xla_with_float32(tmp_path):
    """Part 5 at the tiny preset: float32, mixed_bfloat16 and XLA through tfpipe's KerasTrainer; shape only (the
    tolerances are reported, never asserted). The GPU preset's configurations run here too (mixed_float16 is
    emulated on a CPU): the preset must work when a GPU is lent."""
    out = tmp_path / "results"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    configs = ["float32", "mixed_bfloat16", "xla", "mixed_float16+xla", "raw_loop", "keras_fit"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--preset", "tiny", "--parts", "accelerators", "--candidates",
         ",".join(configs), "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=470,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    part = json.loads((out / "latest.json").read_text())["parts"]["accelerators"]
    assert part["settings"]["configs"] == configs
    assert part["vs_float32"]["float32"] == 1.0 and all(r > 0 for r in part["vs_float32"].values())
    for name in configs:
        check = part["correctness"][name]
        assert len(check["losses"]) == part["settings"]["check_steps"] // part["settings"]["check_every"]
        assert check["max_rel_loss_diff"] >= 0 and check["tolerance"] > 0 and isinstance(check["ok"], bool)
        assert len(part["samples"][name]) == part["settings"]["reps"]
    assert part["correctness"]["raw_loop"]["max_rel_loss_diff"] == 0.0  # The same trainer, the same numbers.
    assert "Precision and XLA" in (out / "latest.md").read_text()


def test_the_gpu_preset_runs_only_the_parts_that_have_one(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--preset", "gpu", "--parts", "cold_start", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "part(s) ['cold_start'] have no preset 'gpu'" in done.stderr


def test_bench_modules_import_each_other_without_a_circle():
    """bench/ imports go one way (module-level or deferred alike): a circle would make its layering unreadable."""
    import ast

    modules = {".".join(path.relative_to(REPO_ROOT).with_suffix("").parts): path
               for path in (REPO_ROOT / "bench").rglob("*.py") if ".orbit-pkgs" not in path.parts}
    imports = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("bench.")}
        imports[name] = {m for m in found if m in modules and m != name}

    def reaches(start, target, seen):
        return any(m == target or (m not in seen and reaches(m, target, seen | {m})) for m in imports[start])

    circles = sorted(name for name in modules if reaches(name, name, {name}))
    assert not circles, f"bench modules in an import circle: {circles}"
