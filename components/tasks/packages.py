"""Task packages: a wheel or sdist that a step installs before it imports its task (the `task_package` input).

For users who cannot build images: like Vertex AI's prebuilt containers with a
Python package, every step downloads the package (gs:// through
google-cloud-storage, or a local or /gcs/ path), installs it with pip into a
folder of its own keyed by the file's SHA-256, and puts that folder first on
`sys.path`. The image's own packages are never changed, so the package's
dependencies must already be in the image (TensorFlow, tf-keras and tfpipe
always are); a missing one is reported by name before the task is imported.
Installing runs the package's build code: who sets `task_package` chooses the
code that runs (see `tfpipe.components.tasks`).
"""

import hashlib
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional

from tfpipe import checks
from tfpipe.components import gcs

CACHE_ENV = "TFPIPE_TASK_PACKAGE_CACHE"


def _cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "tfpipe-task-packages")


def _fetch(uri: str, folder: str) -> str:
    """Copies the package file at `uri` into `folder`; returns the local path."""
    local = os.path.join(folder, os.path.basename(uri))
    if uri.startswith("gs://"):
        try:
            gcs.blob(*gcs.gcs_location(uri)).download_to_filename(local)
        except Exception as e:  # google.api_core's NotFound/Forbidden, or a transport error.
            if getattr(e, "code", None) in (403, 404):
                raise checks.InputError(f"`task_package` ({uri}) cannot be read: {e}.") from None
            raise
        return local
    if not os.path.isfile(uri):
        raise checks.InputError(f"`task_package` ({checks.shown(uri)}) is not a file.")
    shutil.copyfile(uri, local)
    return local


def _missing_requirements(site: str) -> List[str]:
    """Requirements of the distributions installed in `site` that this environment does not satisfy."""
    from packaging.requirements import Requirement  # pip's and setuptools' dependency; always present with pip.

    missing = []
    for dist in importlib.metadata.distributions(path=[site]):
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                version = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(str(requirement))
                continue
            if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
                missing.append(f"{requirement} (the image has {version})")
    return missing


def install_task_package(uri: Optional[str]) -> Optional[str]:
    """Installs the task package at `uri` (once per file content) and puts it first on `sys.path`.

    Args:
        uri: A `.whl`, `.tar.gz` or `.zip` on gs://, a /gcs/ mount or a local path; None or "" does nothing.

    Returns:
        The folder the package is installed in, or None.

    Raises:
        checks.InputError: If the file cannot be read, pip cannot install it, or a dependency is missing.
    """
    uri = checks.check_package_uri("task_package", uri)
    if uri is None:
        return None
    with tempfile.TemporaryDirectory(prefix="tfpipe-task-package-") as download:
        local = _fetch(uri, download)
        with open(local, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:32]
        site = os.path.join(_cache_root(), digest)
        if not os.path.isdir(site):
            os.makedirs(_cache_root(), exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".{digest}-", dir=_cache_root())
            out = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-input",
                 "--disable-pip-version-check", "--target", staging, local],
                capture_output=True, text=True,
            )
            if out.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise checks.InputError(f"`task_package` ({uri}) could not be installed by pip: {last}")
            try:
                os.rename(staging, site)  # Atomic: another step installing the same file may have won.
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
    missing = _missing_requirements(site)
    if missing:
        raise checks.InputError(
            f"`task_package` ({uri}) needs {missing}, which the image does not have: add them to a derived image "
            "(FROM the tfpipe image, then pip install), or use such an image instead of task_package."
        )
    if site not in sys.path:
        sys.path.insert(0, site)
        importlib.invalidate_caches()
    print(f"task_package | installed {uri} into {site}", flush=True)
    return site
