"""Production retry, timeout and cache settings for TensorFlow's built-in gs:// filesystem.

Every component reads and writes its run directory through TensorFlow's own GCS filesystem (`tf.io.gfile`,
checkpoints, summaries, SavedModel). That filesystem retries by itself; this module only tunes it, through the
environment variables it reads (TensorFlow 2.21, `xla/tsl/platform/cloud/gcs_file_system.cc`):

**When they are read.** In TF 2.21 the `gs` filesystem is registered, and so constructed, while
`libtensorflow_framework` loads, i.e. during `import tensorflow`: the retry config, the timeouts and the stat cache
settings are read then, once per process. Setting them after `import tensorflow` has no effect (measured: with
`GCS_RETRY_CONFIG_MAX_RETRIES=3` before the import and `=1` after it, a failing call reported "All 3 retry attempts
failed"). So `configure_gcs_retries()`
must run before anything imports TensorFlow; every value is set with `os.environ.setdefault`, so a value already in
the environment (a user's, the image's, a test's) wins.

**What is retried** (`tsl/platform/retrying_utils.cc`, `retrying_file_system.h`, `curl_http_request.cc`): every
filesystem call (stat, list, exists, read, open, create dir, rename, delete, and a writable file's
Sync/Flush/Close) runs in `RetryingUtils::CallWithRetries`, which retries the status codes UNAVAILABLE,
DEADLINE_EXCEEDED and UNKNOWN. HTTP 308, 409, 429, 500, 502, 503 and every other unlisted code map to UNAVAILABLE, as
does every libcurl error (connection refused or reset, empty reply, truncated body, timeouts, an aborted stalled
transfer) except "could not resolve host" and a bad CA file; 400/401/403/404/412 and friends are not retried. The
delay before retry `r` (0-based) is `min(init_delay << r, max_delay)` plus a uniform random 0-1 s of jitter;
`Retry-After` is not read. After `max_retries` retries the call fails with ABORTED ("All N retry attempts failed"),
which outer retry loops do not retry again. Deletes (and a rename's delete) treat a NOT_FOUND on a retry as success,
so a delete whose answer was lost is not an error (but see `GCS_STAT_CACHE_MAX_AGE` below).

**Uploads.** A GCS writable file is staged in a local temp file and uploaded whole on every Flush/Sync/Close through
a resumable session: after a failed upload request TensorFlow asks GCS how much it has (`Content-Range: bytes */N`)
and resumes from there, within the same retry budget; if the session is gone (404), Sync fails UNAVAILABLE and the
retrying wrapper starts the whole upload again in a new session. A rename is a server-side `rewriteTo` plus a delete,
so a rename whose answer was lost is simply redone.

Call `configure_gcs_retries()` at the very top of a process's entry point, before any import of TensorFlow (for
the components: in `components/__init__.py`, which runs before any `components.<name>` module imports TensorFlow),
and/or bake the same values into the image (`gcs_retry_env()` lists them for Dockerfile `ENV` lines).
"""

import os
import sys
import warnings
from typing import Dict, MutableMapping, Optional

GCS_RETRY_DEFAULTS: Dict[str, str] = {
    # Backoff before the first retry: 1 s (TF's default). GCS asks clients to back off exponentially from about
    # 1 s, and limits each object name to about one update per second: the run directory rewrites the same names
    # often (the `checkpoint` state file, event files re-uploaded on every flush, best.json), so a 429 is answered
    # by waiting at least that long.
    "GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "1000000",
    # Cap on the backoff: 32 s (TF's default, GCS's recommended truncation).
    "GCS_RETRY_CONFIG_MAX_DELAY_TIME_US": "32000000",
    # Retries per call: 10 (TF's default). With the delays above a call rides out about 3.3 minutes of
    # unavailability (1+2+4+8+16+5*32 s, plus up to 1 s of jitter each) before it fails; past that the step fails
    # and KFP's retry resumes it from the last checkpoint, which beats hanging a whole accelerator job on GCS.
    "GCS_RETRY_CONFIG_MAX_RETRIES": "10",
    # Connection set-up (DNS, TCP, TLS, proxy CONNECT): 30 s instead of TF's 120 s. A healthy connect to GCS takes
    # milliseconds; a black-holed one should be retried on a fresh connection after 30 s, not 2 minutes.
    "GCS_REQUEST_CONNECTION_TIMEOUT_SECS": "30",
    # No byte in either direction for this long aborts the request (which is then retried): 30 s instead of TF's
    # 60 s. It is what catches a stalled transfer; a healthy GCS request is never silent that long (finalizing even
    # a large upload takes seconds), so a hung checkpoint save costs 30 s, not a minute.
    "GCS_REQUEST_IDLE_TIMEOUT_SECS": "30",
    # Total time of one metadata request (stat, list page, delete, rewrite within a bucket, upload-session
    # start/status, compose): 120 s instead of TF's 3600 s. These answers are small and quick; a request that
    # trickles for 2 minutes is retried instead of holding the job for up to an hour.
    "GCS_METADATA_REQUEST_TIMEOUT_SECS": "120",
    # Total time of one read request: 3600 s (TF's default), kept. One request reads a whole block (64 MB by
    # default) or, for a large single read (restoring a big tensor), the whole range: a cut-off read is retried
    # from its start and would fail again, so the cap stays generous; stalls are caught by the idle timeout.
    "GCS_READ_REQUEST_TIMEOUT_SECS": "3600",
    # Total time of one upload request: 3600 s (TF's default), kept for the same reason: a checkpoint shard is one
    # PUT of the whole file.
    "GCS_WRITE_REQUEST_TIMEOUT_SECS": "3600",
    # Not a retry setting, but one the retries need: no stat cache (TF's default keeps stat results 5 s). When a
    # DELETE takes effect but its answer is lost, TF's retry gets 404 and reports success, but the failed first
    # attempt returned before `ClearFileCaches`, so the deleted object stays "existing" in the cache: a later
    # `exists()` says yes and `remove()` then raises NotFoundError (measured: `run_dir.write_json_atomic` failed so,
    # after the DELETE of its temp file inside `rename` lost its answer). The cache also hides new checkpoints from
    # a poller in another process. Every stat now costs a small metadata request.
    "GCS_STAT_CACHE_MAX_AGE": "0",
}
"""The settings `configure_gcs_retries` applies, by environment variable (all read by TF's GCS filesystem)."""


def gcs_retry_env() -> Dict[str, str]:
    """The production settings as environment variables, e.g. for a Dockerfile `ENV` or KFP `set_env_variable`."""
    return dict(GCS_RETRY_DEFAULTS)


def configure_gcs_retries(environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """Sets the production GCS retry, timeout and stat-cache settings where the environment does not set them.

    Must run before TensorFlow is imported in this process: TF 2.21 reads these variables during
    `import tensorflow` (see the module docstring). A value already present is kept, so users and tests can
    override any of them.

    Args:
        environ: The environment to update; `os.environ` when None (pass a dict to build a child's environment).

    Returns:
        The effective value of every variable in `GCS_RETRY_DEFAULTS`.

    Warns:
        RuntimeWarning: When updating `os.environ` after TensorFlow was imported: the values then do not reach
            TensorFlow's GCS filesystem in this process (child processes still get them).
    """
    target = os.environ if environ is None else environ
    if environ is None and "tensorflow" in sys.modules:
        warnings.warn(
            "configure_gcs_retries() called after TensorFlow was imported: TensorFlow read its GCS retry and timeout "
            "settings at import, so they do not apply in this process. Call it before importing TensorFlow.",
            RuntimeWarning,
            stacklevel=2,
        )
    for name, value in GCS_RETRY_DEFAULTS.items():
        target.setdefault(name, value)
    return {name: target[name] for name in GCS_RETRY_DEFAULTS}
