"""The product under GCS faults: 503s, 429s, dropped connections and slow replies, retried by TensorFlow itself.

The product processes (train, continuous_eval, export) run as subprocesses whose gs:// traffic goes through a proxy
that faults a seeded share of requests (:mod:`tests.support.gcs_faults`). Their retry, timeout and stat-cache settings
come from :func:`tfpipe.components.common.gcs_retry.configure_gcs_retries`, called before TensorFlow is imported (TF 2.21 reads them
during ``import tensorflow``); the test environment's own values (``GcsEmulator.env``) are removed for them.

Test-only overrides, each for speed or to show a failure, never to make a fault pass:

* the pipeline test: ``GCS_RETRY_CONFIG_INIT_DELAY_TIME_US=0``. TensorFlow waits ``init_delay << retry`` plus 0-1 s
  of random jitter before each retry (the jitter only when the initial delay is above 0); with over a hundred
  injected faults per pipeline the production 1 s start would add minutes of sleeping.
  ``test_production_backoff_applies_...`` runs a few faults with the production settings, untouched;
* the stall test: ``GCS_REQUEST_IDLE_TIMEOUT_SECS=1`` instead of 30, so a stalled reply costs seconds;
* the stat-cache test: ``GCS_STAT_CACHE_MAX_AGE=5`` (TF's default), the lost-DELETE case it pins.

What "nothing lost or corrupted" means here: the faulty run leaves the same objects as a fault-free run of the same
config, and (training being deterministic on CPU) the same values where it matters: every checkpoint's tensors, every
evaluation record, the best checkpoint, the summaries, and the exported SavedModel's predictions.
"""

from __future__ import annotations

import collections
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfpipe.components.common.gcs_retry import GCS_RETRY_DEFAULTS
from tests.support.gcs_emulator import GcsEmulator
from tests.support.gcs_faults import (
    FAULT_KINDS,
    RandomGcsFaults,
    TargetedGcsFaults,
    count_faults,
    read_fault_log,
)
from tests.support.gcs_proxy import GcsProxy, ProxiedRequest, ProxyFault, ProxyResponse

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
# Override to explore: GCS_FAULT_RATE=0.25 GCS_FAULT_SEED=3 pytest tests/test_gcs_faults.py -k pipeline -s
FAULT_RATE = float(os.environ.get("GCS_FAULT_RATE", "0.15"))
SEED = int(os.environ.get("GCS_FAULT_SEED", "20261"))
TEST_ONLY_OVERRIDES = {"GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "0"}  # Speed only; see the module docstring.
# Emulator-fixture settings that are not production's: dropped so the product runs with its own (TF's) values.
_TEST_ENV_SETTINGS = ("GCS_STAT_CACHE_MAX_AGE", "GCS_MATCHING_PATHS_CACHE_MAX_AGE")

# The product entry point, preceded by what components/__init__.py should do: configure retries before TF loads.
_ENTRY = """
import json, runpy, sys
from tfpipe.components.common.gcs_retry import configure_gcs_retries
settings = configure_gcs_retries()
assert "tensorflow" not in sys.modules, "TensorFlow was imported before its GCS settings were configured"
print("gcs-settings " + json.dumps(settings, sort_keys=True), flush=True)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def product_env(emulator: GcsEmulator, **overrides: str) -> dict[str, str]:
    """The environment of a product process: the emulator's routing, no test retry/timeout values, `overrides`."""
    env = {**os.environ, **emulator.env, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    for name in (*GCS_RETRY_DEFAULTS, *_TEST_ENV_SETTINGS):
        env.pop(name, None)
    env.update(overrides)
    return env


def run_step(module: str, flags: list[str], env: dict[str, str], timeout: float = 180) -> tuple[str, dict, float]:
    """Runs ``python -m <module> <flags>`` behind :data:`_ENTRY`; returns its stdout, GCS settings and duration."""
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _ENTRY, module, *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert out.returncode == 0, f"{module} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    settings = json.loads(out.stdout.split("gcs-settings ", 1)[1].splitlines()[0])
    return out.stdout, settings, elapsed


def run_pipeline(emulator: GcsEmulator, bucket: str, output_path: Path) -> dict[str, object]:
    """train -> continuous_eval -> export on ``gs://<bucket>/run``, each step a product process."""
    emulator.create_bucket(bucket)
    env = product_env(emulator, **TEST_ONLY_OVERRIDES)
    model_dir = f"gs://{bucket}/run"
    task = ["--task=digits", f"--model_dir={model_dir}"]
    steps = {
        "train": ["--train_steps=200", "--steps_per_loop=50", "--checkpoint_interval=50"],
        "continuous_eval": ["--poll_interval=0.2", "--idle_timeout=120", "--best_metric=accuracy",
                            "--best_mode=higher"],
        "export": [f"--output_path={output_path}", f"--export_dir=gs://{bucket}/serving"],
    }  # fmt: skip
    result: dict[str, object] = {"seconds": {}, "settings": {}, "stdout": {}}
    for name, flags in steps.items():
        stdout, settings, elapsed = run_step(f"tfpipe.components.{name}", [*task, *flags], env)
        result["seconds"][name] = round(elapsed, 1)
        result["settings"][name] = settings
        result["stdout"][name] = stdout
    result["requests"] = emulator.proxy.requests_served
    return result


def download_bucket(emulator: GcsEmulator, bucket: str, destination: Path) -> list[str]:
    """Copies every object of ``bucket`` to ``destination`` straight from the emulator (no proxy, no faults)."""
    names = []
    for blob in emulator.client().list_blobs(bucket):
        names.append(blob.name)
        target = destination / blob.name
        if blob.name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
    return sorted(names)


def _normalized(name: str) -> str:
    return re.sub(r"events\.out\.tfevents\.[^/]+$", "events.out.tfevents.*", name)


def _checkpoint_tensors(prefix: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    # A tf.data iterator's state is a variant tensor that NumPy cannot hold: it is restored, not compared.
    return {
        name: reader.get_tensor(name)
        for name, dtype in reader.get_variable_to_dtype_map().items()
        if dtype != tf.variant
    }


def _summaries(run_dir: Path) -> dict[str, list[tuple[str, int, float]]]:
    """Every scalar but speeds, of every event file under ``run_dir``, by directory (each file read to its end)."""
    import tensorflow as tf

    found: dict[str, list[tuple[str, int, float]]] = collections.defaultdict(list)
    for path in sorted(glob.glob(str(run_dir / "**" / "events.out.tfevents.*"), recursive=True)):
        for event in tf.compat.v1.train.summary_iterator(path):  # Raises DataLossError on a damaged file.
            for value in event.summary.value:
                if value.tag.endswith("per_second"):
                    continue  # Wall-clock speed, different in every run.
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                found[os.path.relpath(os.path.dirname(path), run_dir)].append((value.tag, event.step, number))
    return {directory: sorted(values) for directory, values in found.items()}


def _predictions(saved_model: Path) -> np.ndarray:
    import tensorflow as tf
    from sklearn.datasets import load_digits

    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    features = (load_digits().data[:64] / 16.0).astype(np.float32)
    name = list(signature.structured_input_signature[1])[0]
    outputs = signature(**{name: tf.constant(features)})
    return np.concatenate([np.asarray(outputs[key]).reshape(len(features), -1) for key in sorted(outputs)], axis=1)


def check_run(local: Path, bucket: str) -> dict[str, object]:
    """Checks one downloaded run for completeness; returns what :func:`compare_runs` compares."""
    run = local / "run"
    steps = sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in run.glob("ckpt-*.index"))
    assert steps == [50, 100, 150, 200], steps
    complete = json.loads((run / "training_complete.json").read_text())
    assert complete["step"] == 200
    records_dir = run / "eval" / "validation" / "records"
    records = {int(p.stem): json.loads(p.read_text()) for p in sorted(records_dir.glob("*.json"))}
    assert sorted(records) == steps, f"records for {sorted(records)}, checkpoints {steps}"
    for step, record in records.items():
        assert record["step"] == step and record["checkpoint"] == f"gs://{bucket}/run/ckpt-{step}", record
        assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
    best = json.loads((run / "eval" / "validation" / "best" / "best.json").read_text())
    best_step = best["step"]
    assert best["best_checkpoint"] == f"gs://{bucket}/run/eval/validation/best/ckpt-{best_step}"
    assert best["metrics"]["accuracy"] == max(r["metrics"]["accuracy"] for r in records.values())
    tensors = {step: _checkpoint_tensors(run / f"ckpt-{step}") for step in steps}
    best_copy = _checkpoint_tensors(run / "eval" / "validation" / "best" / f"ckpt-{best_step}")
    assert best_copy.keys() == tensors[best_step].keys()
    for name, value in best_copy.items():
        np.testing.assert_array_equal(value, tensors[best_step][name], err_msg=f"best copy {name}")
    export = local / "serving" / str(best_step)
    info = json.loads((export / "tfpipe_export.json").read_text())
    assert info["step"] == best_step
    predictions = _predictions(export)
    assert np.isfinite(predictions).all()
    return {"steps": steps, "tensors": tensors, "records": records, "best": best, "predictions": predictions,
            "summaries": _summaries(run)}  # fmt: skip


# -- the pipeline under faults ------------------------------------------------------------------------------------


@pytest.mark.timeout(600)  # Two pipelines side by side, one of them under faults.
def test_pipeline_under_gcs_faults_matches_a_fault_free_run(faulty_gcs, tmp_path: Path) -> None:
    """train -> continuous_eval -> export with 15% of GCS requests faulted ends exactly as a fault-free run."""
    log = tmp_path / "faults.jsonl"
    clean = faulty_gcs(RandomGcsFaults(0.0))
    faulty = faulty_gcs(RandomGcsFaults(FAULT_RATE, seed=SEED, log_path=log))

    # Side by side: the faulty run mostly waits (retries, slow replies), the clean one mostly computes.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        clean_future = pool.submit(run_pipeline, clean, "clean", tmp_path / "clean-model")
        faulty_run = run_pipeline(faulty, "faulty", tmp_path / "faulty-model")
        clean_run = clean_future.result()
    faults = read_fault_log(log)
    report = {
        "requests": {"clean": clean_run["requests"], "faulty": faulty_run["requests"]},
        "faults": len(faults),
        "by_kind": dict(count_faults(log)),
        "by_op": dict(count_faults(log, by=("op",))),
        "seconds": {"clean": clean_run["seconds"], "faulty": faulty_run["seconds"]},
    }
    print("gcs-fault-report " + json.dumps(report, sort_keys=True))

    # The product processes ran with configure_gcs_retries()' values, plus the one stated override.
    expected = {**GCS_RETRY_DEFAULTS, **TEST_ONLY_OVERRIDES}
    for settings in faulty_run["settings"].values():
        assert settings == expected
    # Faults were really injected, of every kind, at about the configured rate.
    assert set(report["by_kind"]) == set(FAULT_KINDS), report
    assert 0.5 * FAULT_RATE <= len(faults) / faulty_run["requests"] <= 1.5 * FAULT_RATE, report

    clean_names = download_bucket(clean, "clean", tmp_path / "clean")
    faulty_names = download_bucket(faulty, "faulty", tmp_path / "faulty")
    # The same objects, but for empty folder markers (`run/`): TF's makedirs creates one when a faulted listing
    # made the folder look absent; it holds nothing.
    assert [_normalized(n) for n in faulty_names if not n.endswith("/")] == [
        _normalized(n) for n in clean_names if not n.endswith("/")]
    assert not [n for n in faulty_names if ".tmp" in n or "_temp" in n], faulty_names  # No stranded temp objects.

    expected_run = check_run(tmp_path / "clean", "clean")
    got = check_run(tmp_path / "faulty", "faulty")
    # Training is deterministic here (seeded, CPU): a run under faults must be bit-identical.
    assert got["steps"] == expected_run["steps"]
    for step in got["steps"]:
        assert got["tensors"][step].keys() == expected_run["tensors"][step].keys()
        for name, value in got["tensors"][step].items():
            np.testing.assert_array_equal(value, expected_run["tensors"][step][name], err_msg=f"ckpt-{step} {name}")
    def strip(record: dict) -> dict:
        # Drop the bucket-specific path, the wall-clock fields and the checkpoint's content fingerprint (a hash of
        # its .index, which also covers the tf.data iterator's serialized state, not compared above).
        return {k: v for k, v in record.items()
                if k not in ("checkpoint", "checkpoint_fingerprint", "duration", "time")}

    assert {s: strip(r) for s, r in got["records"].items()} == {
        s: strip(r) for s, r in expected_run["records"].items()
    }
    assert got["best"]["step"] == expected_run["best"]["step"]
    assert got["summaries"] == expected_run["summaries"]
    np.testing.assert_array_equal(got["predictions"], expected_run["predictions"])
    np.testing.assert_array_equal(_predictions(tmp_path / "faulty-model"), got["predictions"])


# -- targeted faults, production backoff ----------------------------------------------------------------------------

_TARGETED_CHILD = r"""
import json, os, sys, time
from tfpipe.components.common.gcs_retry import configure_gcs_retries
configure_gcs_retries()
import tensorflow as tf

root = sys.argv[1]
data = os.urandom(200_000)
timings = {}
start = time.monotonic()
with tf.io.gfile.GFile(f"{root}/a.bin", "wb") as f:
    f.write(data)
timings["write"] = time.monotonic() - start
start = time.monotonic()
tf.io.gfile.rename(f"{root}/a.bin", f"{root}/b.bin")
timings["rename"] = time.monotonic() - start
start = time.monotonic()
with tf.io.gfile.GFile(f"{root}/b.bin", "rb") as f:
    same = f.read() == data
timings["read"] = time.monotonic() - start
start = time.monotonic()
tf.io.gfile.remove(f"{root}/b.bin")
timings["remove"] = time.monotonic() - start
start = time.monotonic()
from tfpipe.controller_core import run_dir
run_dir.write_json_atomic(f"{root}/state.json", {"step": 1})  # Upload temp, rename (rewrite + DELETE), clean up.
timings["write_json_atomic"] = time.monotonic() - start
print(json.dumps({"same": same, "exists_a": tf.io.gfile.exists(f"{root}/a.bin"),
                  "exists_b": tf.io.gfile.exists(f"{root}/b.bin"), "state": run_dir.read_json(f"{root}/state.json"),
                  "timings": timings}))
"""


def test_production_backoff_applies_and_non_idempotent_calls_survive_lost_answers(faulty_gcs, tmp_path) -> None:
    """With the production settings (no override at all): faults on each call of a write/rename/read/remove.

    The upload's data PUT gets a 503 (TF asks the session's status and re-sends), the rename's rewrite and its
    DELETE of the source take effect but lose their answer, the read is cut mid-body, the remove gets a 429, and the
    product's `run_dir.write_json_atomic` loses the answer of its rename's DELETE of the temp object; each call costs
    at least one retry after the production initial delay (1 s).
    """
    log = tmp_path / "faults.jsonl"
    rules = [
        ("upload-data", 1, "http_503"),
        ("rewrite", 1, "reset_after"),
        ("delete", 1, "reset_after", "a.bin"),
        ("read", 1, "truncate"),
        ("delete", 1, "http_429", "b.bin"),
        ("delete", 1, "reset_after", ".tmp-"),
    ]
    emulator = faulty_gcs(TargetedGcsFaults(rules, log_path=log))
    emulator.create_bucket("targeted")
    out = subprocess.run(
        [sys.executable, "-c", _TARGETED_CHILD, "gs://targeted/dir"],
        cwd=ROOT, env=product_env(emulator, TF_CPP_MIN_LOG_LEVEL="0"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print("targeted " + json.dumps(result, sort_keys=True))
    assert result["same"] and not result["exists_a"] and not result["exists_b"], result
    assert result["state"] == {"step": 1}, result
    assert sorted((f["op"], f["kind"]) for f in read_fault_log(log)) == sorted((r[0], r[2]) for r in rules)
    for call in ("write", "rename", "read", "remove", "write_json_atomic"):
        assert result["timings"][call] >= 1.0, result  # The production initial backoff was applied.
    assert "RequestUploadSessionStatus" in out.stderr  # TF resumed the upload session (it logs this at INFO).
    names = [b.name for b in emulator.client().list_blobs("targeted") if not b.name.endswith("/")]
    assert names == ["dir/state.json"], names  # Nothing stranded: no a.bin, b.bin or temp object.


_ATOMIC_WRITE_CHILD = r"""
import sys
from tfpipe.components.common.gcs_retry import configure_gcs_retries
configure_gcs_retries()
import tensorflow as tf
from tfpipe.controller_core import run_dir
run_dir.write_json_atomic(sys.argv[1], {"step": 1})
print(run_dir.read_json(sys.argv[1]))
"""


def test_atomic_json_write_with_tf_default_stat_cache_survives_a_lost_delete_answer(faulty_gcs) -> None:
    """run_dir.write_json_atomic with TF's default 5 s stat cache, the DELETE of its temp object losing its answer.

    TF's GcsFileSystem::DeleteFile returns before ClearFileCaches on the failed first attempt and
    DeleteWithRetries turns the retry's 404 into OK, so the deleted temp object stays "existing" in the stat cache.
    An exists-then-remove cleanup then removed it again and failed with NotFoundError; the cleanup now removes
    without asking and tolerates NotFound (run_dir.remove_if_present), whatever the cache setting.
    """
    emulator = faulty_gcs(TargetedGcsFaults([("delete", 1, "reset_after")]))
    emulator.create_bucket("atomic")
    env = product_env(emulator, GCS_STAT_CACHE_MAX_AGE="5")  # TF's default, instead of configure_gcs_retries()' 0.
    out = subprocess.run(
        [sys.executable, "-c", _ATOMIC_WRITE_CHILD, "gs://atomic/run/run_config.json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("{'step': 1}")


_STALL_CHILD = r"""
import json, sys, time
from tfpipe.components.common.gcs_retry import configure_gcs_retries
configure_gcs_retries()
import tensorflow as tf
start = time.monotonic()
exists = tf.io.gfile.exists(sys.argv[1])
print(json.dumps({"exists": exists, "seconds": time.monotonic() - start}))
"""


def test_stalled_request_is_aborted_by_the_idle_timeout_and_retried(faulty_gcs, tmp_path) -> None:
    """A reply that stalls past GCS_REQUEST_IDLE_TIMEOUT_SECS is aborted by TF (libcurl progress callback) and retried.

    Test-only override: an idle timeout of 1 s instead of the production 30 s, so the stall costs seconds.
    """
    # The second stat fails with a 503 only if there is a second stat: TF gave up on the stalled first one.
    log = tmp_path / "faults.jsonl"
    emulator = faulty_gcs(TargetedGcsFaults([("stat", 1, "slow"), ("stat", 2, "http_503")], slow_s=60.0, log_path=log))
    emulator.create_bucket("stall")
    env = product_env(emulator, GCS_REQUEST_IDLE_TIMEOUT_SECS="1")
    out = subprocess.run(
        [sys.executable, "-c", _STALL_CHILD, "gs://stall/missing.json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["exists"] is False
    # Aborted after 1 s of silence and sent again (a client that waited the stall out sends one stat only).
    assert count_faults(log) == {"slow": 1, "http_503": 1}, result


# -- the proxy's fault mode ---------------------------------------------------------------------------------------


class _FixedFault:
    """Plays one fault on every request (module level: picklable)."""

    def __init__(self, fault: ProxyFault | ProxyResponse) -> None:
        self.fault = fault

    def __call__(self, request: ProxiedRequest) -> ProxyFault | ProxyResponse:
        return self.fault


def _exchange(port: int, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _create_bucket_request(name: str) -> bytes:
    body = json.dumps({"name": name}).encode()
    return (
        b"POST http://www.googleapis.com/storage/v1/b?project=test HTTP/1.1\r\nHost: www.googleapis.com\r\n"
        b"Connection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


@pytest.mark.parametrize(
    ("fault", "reaches_emulator"),
    [
        (ProxyResponse(503, "Service Unavailable"), False),
        (ProxyFault(drop="before_forward"), False),
        (ProxyFault(drop="after_forward"), True),
        (ProxyFault(drop="mid_body"), True),
        (ProxyFault(delay_s=0.5), True),
    ],
    ids=["503", "reset_before", "reset_after", "truncate", "slow"],
)
def test_proxy_plays_faults(gcs_emulator: GcsEmulator, fault, reaches_emulator: bool) -> None:
    tls = gcs_emulator.tls_files
    name = f"fault-{abs(hash(repr(fault))) % 10**8}-{time.monotonic_ns() % 10**6}"
    with GcsProxy(("127.0.0.1", gcs_emulator.emulator_port), tls.leaf_cert, tls.leaf_key,
                  fault_policy=_FixedFault(fault)) as proxy:  # fmt: skip
        start = time.monotonic()
        answer = _exchange(proxy.port, _create_bucket_request(name))
        elapsed = time.monotonic() - start
    exists = gcs_emulator.client().lookup_bucket(name) is not None
    assert exists == reaches_emulator
    if isinstance(fault, ProxyResponse):
        assert answer.startswith(b"HTTP/1.1 503 ")
    elif fault.drop in ("before_forward", "after_forward"):
        assert answer == b""
    elif fault.drop == "mid_body":
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        assert head.startswith(b"HTTP/1.1 200 ") and 0 < len(body) < length  # Framed, visibly incomplete.
    else:
        assert answer.startswith(b"HTTP/1.1 200 ") and elapsed >= 0.5


def test_random_faults_are_deterministic_and_honour_the_rate() -> None:
    policy = RandomGcsFaults(0.15, seed=3)
    decisions = [policy.choose(n) for n in range(1, 20_001)]
    assert decisions == [RandomGcsFaults(0.15, seed=3).choose(n) for n in range(1, 20_001)]
    assert decisions != [RandomGcsFaults(0.15, seed=4).choose(n) for n in range(1, 20_001)]
    kinds = collections.Counter(d for d in decisions if d is not None)
    assert 0.14 <= sum(kinds.values()) / len(decisions) <= 0.16
    assert set(kinds) == set(FAULT_KINDS) and min(kinds.values()) > 0.8 * max(kinds.values())
    only_503 = RandomGcsFaults(1.0, weights={"http_503": 1})
    assert {only_503.choose(n) for n in range(1, 100)} == {"http_503"}


# -- google-cloud-storage (tests only today: no product module uses it) -------------------------------------------


def test_google_cloud_storage_retries_uploads_only_under_a_generation_precondition(faulty_gcs) -> None:
    """google-cloud-storage through the faulty proxy (plain HTTP, absolute-form requests to www.googleapis.com).

    With ``ConditionalRetryPolicy`` (``DEFAULT_RETRY_IF_GENERATION_SPECIFIED``, here with a short first delay) an
    upload is retried only when ``if_generation_match`` makes it idempotent. And a precondition turns a lost answer
    into ``412 Precondition Failed`` on the retry although the object was written: the caller has to check.
    """
    import requests
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY, ConditionalRetryPolicy, is_generation_specified

    rules = [("upload-multipart", 1, "http_503"), ("upload-multipart", 2, "http_503"),
             ("upload-multipart", 4, "reset_after")]  # fmt: skip
    emulator = faulty_gcs(TargetedGcsFaults(rules))
    emulator.create_bucket("gcs-client")
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"http": emulator.proxy.url}
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), _http=session,
        client_options={"api_endpoint": "http://www.googleapis.com"},
    )  # fmt: skip
    retry = ConditionalRetryPolicy(DEFAULT_RETRY.with_delay(initial=0.05, maximum=1.0), is_generation_specified,
                                   ["query_params"])  # fmt: skip
    bucket = client.bucket("gcs-client")
    with pytest.raises(exceptions.ServiceUnavailable):  # Upload 1: 503, no precondition, not retried.
        bucket.blob("a.txt").upload_from_string(b"one", retry=retry)
    bucket.blob("a.txt").upload_from_string(b"two", retry=retry, if_generation_match=0)  # 2: 503, retried: 3.
    assert bucket.blob("a.txt").download_as_bytes() == b"two"
    with pytest.raises(exceptions.PreconditionFailed):  # 4: written, answer lost; 5: 412 (it exists now).
        bucket.blob("b.txt").upload_from_string(b"three", retry=retry, if_generation_match=0)
    assert bucket.blob("b.txt").download_as_bytes() == b"three"


def _request(sequence: int, method: str, path: str, headers=(), body: bytes = b"") -> ProxiedRequest:
    return ProxiedRequest(sequence, method, "www.googleapis.com", path, tuple(headers), body)


def test_policy_answers_429_with_retry_after() -> None:
    answer = RandomGcsFaults(1.0, weights={"http_429": 1}, retry_after_s=2)(_request(1, "GET", "/storage/v1/b/b/o"))
    assert isinstance(answer, ProxyResponse) and answer.status == 429 and ("Retry-After", "2") in answer.headers


def test_upload_status_query_reaches_the_emulator_only_after_its_data_did() -> None:
    """fake-gcs-server would commit an empty object on a status query for a session it holds no data for."""
    session = "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=x&upload_id=U1"
    data = (("Content-Range", "bytes 0-2/3"),)
    status = (("Content-Range", "bytes */3"),)
    policy = TargetedGcsFaults([("upload-data", 1, "http_503")])
    assert policy(_request(1, "PUT", session, data, b"abc")).status == 503  # Never reached the emulator.
    assert policy(_request(2, "PUT", session, status)) == ProxyResponse(308, "Resume Incomplete")  # As GCS.
    assert policy(_request(3, "PUT", session, data, b"abc")) is None  # Forwarded: the emulator commits.
    assert policy(_request(4, "PUT", session, status)) is None  # Forwarded: the emulator answers (404).
