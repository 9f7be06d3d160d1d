"""Cloud Storage objects through google-cloud-storage, for what TensorFlow's gs:// cannot do: preconditions.

TensorFlow's filesystem reads and writes the run directory; creating an object only
if it is absent (or replacing it only if unchanged) needs the JSON API's generation
preconditions, which google-cloud-storage gives. `/gcs/bucket/...` (Vertex's Cloud
Storage FUSE mount) names the same objects as `gs://bucket/...`.
"""

from typing import Any, Optional, Tuple


def gcs_location(path: str) -> Optional[Tuple[str, str]]:
    """`(bucket, object name)` of a `gs://` URI or a `/gcs/` mount path, else None (a local path)."""
    for prefix in ("gs://", "/gcs/"):
        if path.startswith(prefix):
            bucket, _, name = path[len(prefix):].partition("/")
            return bucket, name.strip("/")
    return None


def bucket(name: str) -> Any:
    """The `google.cloud.storage.Bucket` `gs://name` (credentials: Application Default Credentials)."""
    from google.cloud import storage

    return storage.Client().bucket(name)


def blob(bucket_name: str, name: str) -> Any:
    """The `google.cloud.storage.Blob` of `gs://bucket_name/name`."""
    return bucket(bucket_name).blob(name)
