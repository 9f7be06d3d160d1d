"""TensorFlow's built-in gs:// filesystem and google-cloud-storage against the local GCS emulator.

Needs ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import ssl
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.support.gcs_emulator import GcsEmulator
from tests.support.gcs_proxy import (
    GcsProxy,
    ProxiedRequest,
    ProxyResponse,
    read_fault_policy,
    write_fault_policy,
)

pytestmark = pytest.mark.timeout(120)


def _bucket_name(gcs_url: str) -> str:
    return gcs_url.removeprefix("gs://")


def _write(path: str, data: bytes) -> None:
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _proxy_exchange(emulator: GcsEmulator, request: bytes) -> bytes:
    """Sends raw bytes to the proxy and returns everything it answers before closing."""
    with socket.create_connection(("127.0.0.1", emulator.proxy.port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


# -- tf.io.gfile -------------------------------------------------------------------------------------------------


def test_gfile_write_read_exists_stat(gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/dir/hello.txt"
    assert not tf.io.gfile.exists(path)

    _write(path, b"hello gcs")

    assert tf.io.gfile.exists(path)
    assert _read(path) == b"hello gcs"
    assert tf.io.gfile.stat(path).length == len(b"hello gcs")
    assert tf.io.gfile.isdir(f"{gcs_bucket}/dir")
    assert not tf.io.gfile.isdir(path)


def test_gfile_listdir_glob_makedirs(gcs_bucket: str) -> None:
    for name in ("a.txt", "b.txt", "c.log", "sub/d.txt"):
        _write(f"{gcs_bucket}/data/{name}", name.encode())
    tf.io.gfile.makedirs(f"{gcs_bucket}/made/deeper")

    assert sorted(tf.io.gfile.listdir(f"{gcs_bucket}/data")) == ["a.txt", "b.txt", "c.log", "sub/"]
    assert sorted(tf.io.gfile.glob(f"{gcs_bucket}/data/*.txt")) == [
        f"{gcs_bucket}/data/a.txt",
        f"{gcs_bucket}/data/b.txt",
    ]
    assert tf.io.gfile.isdir(f"{gcs_bucket}/made/deeper")


def test_gfile_rename_copy_remove_rmtree(gcs_bucket: str) -> None:
    source, renamed, copied = (f"{gcs_bucket}/{name}" for name in ("src.bin", "renamed.bin", "tree/copy.bin"))
    _write(source, b"payload")

    tf.io.gfile.rename(source, renamed)
    tf.io.gfile.copy(renamed, copied)

    assert not tf.io.gfile.exists(source)
    assert _read(renamed) == _read(copied) == b"payload"

    tf.io.gfile.remove(renamed)
    _write(f"{gcs_bucket}/tree/nested/x.bin", b"x")
    tf.io.gfile.rmtree(f"{gcs_bucket}/tree")

    assert not tf.io.gfile.exists(renamed)
    assert tf.io.gfile.glob(f"{gcs_bucket}/tree/*") == []
    assert tf.io.gfile.listdir(gcs_bucket) == []


def test_gfile_five_megabyte_round_trip(gcs_bucket: str) -> None:
    data = np.random.default_rng(0).bytes(5 * 1024 * 1024)
    path = f"{gcs_bucket}/big.bin"

    _write(path, data)

    assert tf.io.gfile.stat(path).length == len(data)
    assert _read(path) == data


# -- checkpoints, summaries, SavedModel ----------------------------------------------------------------------------


def _checkpoint(seed: int) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(
        step=tf.Variable(0, dtype=tf.int64),
        weights=tf.Variable(tf.random.stateless_normal([64, 32], seed=[seed, 0])),
    )


def test_checkpoint_manager_keeps_two_and_restores(gcs_bucket: str) -> None:
    directory = f"{gcs_bucket}/ckpt"
    ckpt = _checkpoint(seed=1)
    manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=2)
    for step in range(1, 5):
        ckpt.step.assign(step)
        manager.save(checkpoint_number=step)

    assert [os.path.basename(path) for path in manager.checkpoints] == ["ckpt-3", "ckpt-4"]
    assert tf.train.latest_checkpoint(directory) == f"{directory}/ckpt-4"
    names = tf.io.gfile.listdir(directory)
    assert "checkpoint" in names
    assert {name.split(".")[0] for name in names if name.startswith("ckpt-")} == {"ckpt-3", "ckpt-4"}

    restored = _checkpoint(seed=2)
    restored.restore(f"{directory}/ckpt-3").assert_consumed()
    assert int(restored.step) == 3
    np.testing.assert_array_equal(restored.weights.numpy(), ckpt.weights.numpy())

    reopened = tf.train.CheckpointManager(_checkpoint(seed=3), directory, max_to_keep=2)
    assert reopened.restore_or_initialize() == f"{directory}/ckpt-4"


def test_summary_scalars_read_back(gcs_bucket: str) -> None:
    logdir = f"{gcs_bucket}/logs/train"
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
    writer.close()

    (event_file,) = tf.io.gfile.glob(f"{logdir}/events.out.tfevents.*")
    losses = {
        event.step: float(tf.make_ndarray(value.tensor))
        for event in tf.compat.v1.train.summary_iterator(event_file)
        for value in event.summary.value
        if value.tag == "loss"
    }
    assert losses == pytest.approx({0: 1.0, 1: 0.5, 2: 1.0 / 3.0})


class _Affine(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = tf.Variable([[2.0], [3.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.scale) + 1.0


def test_saved_model_save_and_load(gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/export/1"
    tf.saved_model.save(_Affine(), path)

    assert tf.io.gfile.exists(f"{path}/saved_model.pb")
    loaded = tf.saved_model.load(path)
    result = loaded(tf.constant([[1.0, 1.0], [0.0, 2.0]]))
    np.testing.assert_allclose(result.numpy(), [[6.0], [7.0]])


# -- google-cloud-storage and TensorFlow see the same objects ----------------------------------------------------


def test_storage_client_sees_tensorflow_objects(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    _write(f"{gcs_bucket}/from-tf/a.txt", b"written by tf")

    bucket = gcs_emulator.client().bucket(_bucket_name(gcs_bucket))

    assert [blob.name for blob in bucket.list_blobs(prefix="from-tf/")] == ["from-tf/a.txt"]
    assert bucket.blob("from-tf/a.txt").download_as_bytes() == b"written by tf"


def test_tensorflow_sees_storage_client_objects(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    bucket = gcs_emulator.client().bucket(_bucket_name(gcs_bucket))
    bucket.blob("from-client/b.txt").upload_from_string(b"written by client")

    assert tf.io.gfile.listdir(f"{gcs_bucket}/from-client") == ["b.txt"]
    assert _read(f"{gcs_bucket}/from-client/b.txt") == b"written by client"


# -- the proxy itself ----------------------------------------------------------------------------------------------


def test_proxy_refuses_non_gcs_hosts(gcs_emulator: GcsEmulator) -> None:
    refused_before = gcs_emulator.proxy.requests_refused

    tunnel = _proxy_exchange(gcs_emulator, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    plain = _proxy_exchange(gcs_emulator, b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    wrong_port = _proxy_exchange(gcs_emulator, b"CONNECT www.googleapis.com:8443 HTTP/1.1\r\n\r\n")

    for answer in (tunnel, plain, wrong_port):
        assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert gcs_emulator.proxy.requests_refused == refused_before + 3


def test_proxy_tunnel_presents_trusted_certificate_and_keeps_alive(gcs_emulator: GcsEmulator) -> None:
    context = ssl.create_default_context(cafile=str(gcs_emulator.tls_files.ca_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", gcs_emulator.proxy.port, context=context, timeout=5)
    conn.set_tunnel("www.googleapis.com", 443)
    served_before = gcs_emulator.proxy.requests_served
    try:
        for _ in range(2):  # Both requests on one TLS connection.
            conn.request("GET", "/storage/v1/b?project=test")
            response = conn.getresponse()
            assert response.status == 200
            assert b'"kind"' in response.read()
    finally:
        conn.close()
    assert gcs_emulator.proxy.requests_served == served_before + 2


def test_proxy_fixes_tensorflow_upload_framing(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    bucket = _bucket_name(gcs_bucket)
    head = (
        f"POST http://www.googleapis.com/upload/storage/v1/b/{bucket}/o?uploadType=media&name=framed.txt HTTP/1.1\r\n"
        "Host: www.googleapis.com\r\nContent-Length: 5\r\nTransfer-Encoding: identity\r\n"
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gcs_emulator.proxy.port), timeout=5) as conn:
        conn.sendall(head.encode())
        assert conn.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(b"5\r\nhello\r\n0\r\n\r\n")
        answer = b"".join(iter(lambda: conn.recv(4096), b""))

    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert gcs_emulator.client().bucket(bucket).blob("framed.txt").download_as_bytes() == b"hello"


def _unavailable_for_bucket_list(request: ProxiedRequest) -> ProxyResponse | None:
    if request.method == "GET" and request.path.startswith("/storage/v1/b?"):
        return ProxyResponse(503, "Service Unavailable", body=b"injected")
    return None


def test_in_process_proxy_fault_policy_hook(gcs_emulator: GcsEmulator) -> None:
    tls = gcs_emulator.tls_files
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    upstream = ("127.0.0.1", gcs_emulator.emulator_port)
    proxy = GcsProxy(upstream, tls.leaf_cert, tls.leaf_key, fault_policy=_unavailable_for_bucket_list)
    with proxy:
        for path, status in (("/storage/v1/b?project=test", 503), ("/storage/v1/b/none-such", 404)):
            conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=5)
            conn.set_tunnel("www.googleapis.com", 443)
            try:
                conn.request("GET", path)
                assert conn.getresponse().status == status
            finally:
                conn.close()
        assert proxy.requests_served == 2


def test_fault_policy_survives_the_trip_to_the_proxy_process() -> None:
    buffer = io.BytesIO()
    write_fault_policy(buffer, _unavailable_for_bucket_list)
    write_fault_policy(buffer, None)
    buffer.seek(0)

    assert read_fault_policy(buffer) is _unavailable_for_bucket_list
    assert read_fault_policy(buffer) is None


# -- a separate TensorFlow process -------------------------------------------------------------------------------


def test_subprocess_writes_through_emulator_env(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    path = f"{gcs_bucket}/from-subprocess/out.txt"
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        with tf.io.gfile.GFile({path!r}, "w") as f:
            f.write("hello from a subprocess")
        """
    )
    env = {**os.environ, **gcs_emulator.env, "TF_CPP_MIN_LOG_LEVEL": "2"}

    completed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90, check=False
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert _read(path) == b"hello from a subprocess"
