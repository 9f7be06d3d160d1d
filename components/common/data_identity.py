"""What data a run was trained on: a content fingerprint of each data input, not its run-specific URI.

KFP gives each run's `Dataset` artifacts a new URI, so a URI says nothing about
the data. The run config (`run_config.json`) records instead, for `train_data` and
`eval_data`, what the files hold:

* the files: every file under a folder (names relative to it), the files a glob
  matches (names relative to the glob's folder), or one file (its base name);
* each file's size and CRC32C: on Cloud Storage (`gs://`, and Vertex's `/gcs/`
  mount of the same objects) from the object listing, which holds every
  object's CRC32C, so nothing is read; on a local disk by reading the files, in
  full up to `FULL_HASH_BYTES` (1 GiB) per input and, past that budget, the
  first and last `SAMPLE_BYTES` (1 MiB) of each further file (a "sampled"
  CRC32C, marked as such), which bounds the cost for large datasets;
* a SHA-256 `digest` of the sorted `name, size, checksum` lines, a `names_digest`
  of the names and sizes alone, the file count, the total size, and the whole
  listing when there are at most `LISTED_FILES` (100) files (so that a refusal
  can name the files that differ).

`compare` tells two fingerprints apart: equal digests are the same data, wherever
it is; when one side sampled files that the other hashed in full (a large local
copy of objects on Cloud Storage), equal names and sizes count as the same data,
said on stdout. Anything else is a difference, described for the refusal message.
A `tf.train.Example` serializes its feature map in an order that can differ from
one process to the next unless it is written with
`SerializeToString(deterministic=True)`: write data that way, or the same
examples written twice are different data.
"""

import base64
import fnmatch
import functools
import glob
import hashlib
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from tfpipe.components.common import gcs
from tfpipe.components.common.data import DataInputs, DataRef

FULL_HASH_BYTES = 1 << 30
SAMPLE_BYTES = 1 << 20
LISTED_FILES = 100
# The data inputs a run records and compares; `test_data` is held out from training and not recorded.
RECORDED = ("train_data", "eval_data")
_WILDCARDS = "*?["

File = Tuple[str, int, str]  # (relative name, size, checksum)


def _is_glob(path: str) -> bool:
    return any(c in path for c in _WILDCARDS)


def _crc32c(chunks: Iterator[bytes]) -> str:
    import google_crc32c  # google-cloud-storage's dependency.

    checksum = google_crc32c.Checksum()
    for chunk in chunks:
        checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode("ascii")


def _read_chunks(path: str, start: int = 0, length: Optional[int] = None, size: int = 4 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            chunk = f.read(size if left is None else min(size, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _local_files(uri: str) -> List[Tuple[str, str]]:
    """(relative name, path) of each file `uri` names: a folder's files, a glob's matches, or the file."""
    if _is_glob(uri):
        base = os.path.dirname(uri.split("*")[0].split("?")[0].split("[")[0])
        paths = [p for p in glob.glob(uri) if os.path.isfile(p)]
        return [(os.path.relpath(p, base), p) for p in paths]
    if os.path.isdir(uri):
        found = []
        for root, _, names in os.walk(uri):
            found += [(os.path.relpath(os.path.join(root, n), uri), os.path.join(root, n)) for n in names]
        return found
    if os.path.isfile(uri):
        return [(os.path.basename(uri), uri)]
    return []


def _local_listing(uri: str, budget: int) -> List[File]:
    listing, hashed = [], 0
    for name, path in sorted(_local_files(uri)):
        size = os.path.getsize(path)
        if hashed + size <= budget:
            checksum = "crc32c:" + _crc32c(_read_chunks(path))
            hashed += size
        else:  # Past the budget: the first and last SAMPLE_BYTES only.
            tail = max(SAMPLE_BYTES, size - SAMPLE_BYTES)
            checksum = "sampled:" + _crc32c(
                iter([*_read_chunks(path, 0, SAMPLE_BYTES), *_read_chunks(path, tail, SAMPLE_BYTES)]))
        listing.append((name.replace(os.sep, "/"), size, checksum))
    return listing


def _gcs_listing(bucket_name: str, name: str) -> List[File]:
    from google.cloud import storage

    bucket = storage.Client().bucket(bucket_name)
    if _is_glob(name):
        literal = min((name.index(c) for c in _WILDCARDS if c in name))
        prefix, base = name[:literal], name[:literal].rpartition("/")[0]
        blobs = [b for b in bucket.client.list_blobs(bucket, prefix=prefix) if fnmatch.fnmatchcase(b.name, name)]
    else:
        base = name
        blobs = list(bucket.client.list_blobs(bucket, prefix=f"{name}/" if name else ""))
        if not blobs and name:
            single = bucket.get_blob(name)
            blobs, base = ([single], name.rpartition("/")[0]) if single is not None else ([], name)
    listing = []
    for blob in blobs:
        if blob.name.endswith("/"):  # A folder placeholder object.
            continue
        relative = blob.name[len(base):].lstrip("/") if base else blob.name
        checksum = f"crc32c:{blob.crc32c}" if blob.crc32c else f"md5:{blob.md5_hash}"
        listing.append((relative, int(blob.size or 0), checksum))
    return sorted(listing)


def listing(uri: str, *, budget: int = FULL_HASH_BYTES) -> List[File]:
    """The sorted `(relative name, size, checksum)` of every file `uri` names (see the module docstring)."""
    location = gcs.gcs_location(uri)
    if location is not None:
        return _gcs_listing(*location)
    return _local_listing(uri, budget)


def fingerprint(ref: DataRef, *, budget: int = FULL_HASH_BYTES, name: str = "data input") -> Dict[str, Any]:
    """The content fingerprint of one data input (see the module docstring); computed once per process and URI.

    Raises:
        checks.InputError: If it names no file (the message names the input, `name`).
    """
    from tfpipe import checks

    found = _fingerprint(ref.uri, budget)
    if found is None:
        raise checks.InputError(
            f"`{name}` ({checks.shown(ref.uri)}) holds no files; accepted: a folder of files, a glob pattern that "
            "matches files, or one file (gs://, /gcs/ or local).")
    return dict(found)


@functools.lru_cache(maxsize=16)
def _fingerprint(uri: str, budget: int) -> Optional[Dict[str, Any]]:
    files = listing(uri, budget=budget)
    if not files:
        return None
    sha = lambda lines: hashlib.sha256("\n".join(lines).encode()).hexdigest()  # noqa: E731
    result: Dict[str, Any] = {
        "files": len(files),
        "bytes": sum(size for _, size, _ in files),
        "digest": sha(f"{n}\t{s}\t{c}" for n, s, c in files),
        "names_digest": sha(f"{n}\t{s}" for n, s, _ in files),
        "sampled": any(c.startswith("sampled:") for _, _, c in files),
    }
    if len(files) <= LISTED_FILES:
        result["listing"] = {n: [s, c] for n, s, c in files}
    return result


def identify(data: DataInputs, *, budget: int = FULL_HASH_BYTES) -> Dict[str, Dict[str, Any]]:
    """The fingerprints of the recorded inputs (`train_data`, `eval_data`) that were given.

    Every given input is listed (so that one naming no files is refused before any work); only the recorded ones
    are returned.
    """
    found = {name: fingerprint(ref, budget=budget, name=name) for name, ref in data.given().items()}
    return {name: value for name, value in found.items() if name in RECORDED}


def _describe(value: Optional[Mapping[str, Any]]) -> str:
    if not value:
        return "none"
    return f"{value['files']} file(s), {value['bytes']} bytes, digest {value['digest'][:12]}"


def _listing_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    if "listing" not in a or "listing" not in b:
        return ""
    there, here = a["listing"], b["listing"]
    parts = []
    for label, names in (("only there", sorted(set(there) - set(here))), ("only here", sorted(set(here) - set(there))),
                         ("changed", sorted(n for n in set(there) & set(here) if there[n] != here[n]))):
        if names:
            parts.append(f"{label}: {', '.join(names[:5])}" + (f" and {len(names) - 5} more" if len(names) > 5 else ""))
    return f" ({'; '.join(parts)})" if parts else ""


def compare(stored: Optional[Mapping[str, Any]], wanted: Optional[Mapping[str, Any]], name: str) -> Optional[str]:
    """None when two fingerprints are the same data, else the difference in words (`<name>: ... there, ... here`)."""
    if not stored and not wanted:
        return None
    if stored and wanted:
        if stored["digest"] == wanted["digest"]:
            return None
        if (stored.get("sampled") or wanted.get("sampled")) and stored["names_digest"] == wanted["names_digest"]:
            print(f"data | `{name}`: the same file names and sizes; some files were sampled, not hashed in full, on "
                  "one side, so their content was compared in part only", flush=True)
            return None
    return f"`{name}`: {_describe(stored)} there, {_describe(wanted)} here{_listing_changes(stored or {}, wanted or {})}"
