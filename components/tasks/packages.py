"""Task packages: a wheel that a step installs before it imports its task (the `task_package` input).

For users who cannot build images: like Vertex AI's prebuilt containers with a
Python package, every step downloads the package (gs:// through
google-cloud-storage, or a local or /gcs/ path), installs it with pip into a
folder of its own keyed by the file's SHA-256, and puts that folder first on
`sys.path`. The image's own packages are never changed, so the package's
dependencies must already be in the image (TensorFlow, tf-keras and tfpipe
always are); a missing one is reported by name before the task is imported.

Who sets `task_package` chooses code that runs as the step's service account
(see `tfpipe.components.tasks`). What an image can rely on:

* `TFPIPE_TASK_PACKAGES=off` refuses every `task_package`.
* Wheels only: a wheel installs without running its own code. A source
  distribution runs its build code at install, so it is refused unless the image
  sets `TFPIPE_TASK_PACKAGE_SDISTS=allow`.
* Before anything is installed, the wheel's file name and its file list are
  checked: the top-level modules it would add must be the ones its
  `top_level.txt` declares (when it has one), none may shadow a module this
  interpreter can already import (e.g. a `tensorboard/` folder), and under
  `$TFPIPE_TASK_MODULES` each must be an allowed module. Scripts, headers, data
  files and `.pth` files are refused. The installed folder is checked again
  before it goes on `sys.path`.
* The install cache is a folder of this user only (mode 0700, in
  `$XDG_CACHE_HOME` or `~/.cache`, never a shared temporary path; or
  `$TFPIPE_TASK_PACKAGE_CACHE`, which must be owned by this user and closed to
  others). Each install records the SHA-256 of every installed file; a cached
  folder is used only when its owner, mode and files match that record, and is
  rebuilt otherwise.
* The package file is copied and hashed in chunks, never read whole.
* The step records the package's SHA-256 (`TaskPackage.sha256`), which training
  writes into `run_config.json`; later steps refuse another package file.
"""

import atexit
import dataclasses
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Iterable, List, Optional, Set

from tfpipe import checks
from tfpipe.components.common import gcs

CACHE_ENV = "TFPIPE_TASK_PACKAGE_CACHE"
SWITCH_ENV = "TFPIPE_TASK_PACKAGES"
SDISTS_ENV = "TFPIPE_TASK_PACKAGE_SDISTS"
_CHUNK = 1 << 20
_MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class TaskPackage:
    """An installed task package: where it came from, its file's SHA-256, and the folder it is installed in."""

    uri: str
    sha256: str
    site: str


def _check_enabled(uri: str) -> None:
    switch = os.environ.get(SWITCH_ENV, "").strip().lower()
    if switch in ("off", "0", "false", "no"):
        raise checks.InputError(
            f"`task_package` ({checks.shown(uri)}): this image does not install task packages "
            f"(${SWITCH_ENV}={os.environ[SWITCH_ENV]}); use an image that has the task installed. Nothing was "
            "installed.")
    if switch not in ("", "on", "1", "true", "yes"):
        raise checks.InputError(f"${SWITCH_ENV} must be 'on' or 'off', got {checks.shown(os.environ[SWITCH_ENV])}.")


def _private_folder(path: str, what: str) -> str:
    """Creates `path` (mode 0700) if needed and checks that it is a folder of this user that nobody else can
    write or read."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise checks.InputError(
            f"{what} ({path}) must be a folder of this user (uid {os.getuid()}) closed to others (mode 0700); it is "
            f"{'not a folder' if not stat.S_ISDIR(info.st_mode) else f'owned by uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}'}. "
            "Nothing was installed.")
    return path


def _cache_root() -> str:
    """The install cache: `$TFPIPE_TASK_PACKAGE_CACHE`, else this user's cache folder, else a new private folder."""
    if os.environ.get(CACHE_ENV):
        return _private_folder(os.environ[CACHE_ENV], f"${CACHE_ENV}")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        os.makedirs(base, exist_ok=True)
        return _private_folder(os.path.join(base, "tfpipe-task-packages"), "the task package cache")
    except OSError:  # No writable home (some containers): a private folder of this process, no cache.
        return _process_folder()


@functools.lru_cache(maxsize=None)
def _process_folder() -> str:
    """A private folder of this process (mode 0700), made once and removed when the process exits."""
    folder = tempfile.mkdtemp(prefix="tfpipe-task-packages-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _fetch(uri: str, folder: str) -> str:
    """Copies the package file at `uri` into `folder` in chunks; returns the local path."""
    local = os.path.join(folder, os.path.basename(uri))
    if uri.startswith("gs://"):
        try:
            gcs.blob(*gcs.gcs_location(uri)).download_to_filename(local)  # Streams to the file.
        except Exception as e:  # google.api_core's NotFound/Forbidden, or a transport error.
            code = getattr(e, "code", None)
            if code in (403, 404):
                reason = "does not exist" if code == 404 else "is not readable by this step's service account"
                raise checks.InputError(f"`task_package` ({uri}) {reason} (HTTP {code}).") from None
            raise
        return local
    if not os.path.isfile(uri):
        raise checks.InputError(f"`task_package` ({checks.shown(uri)}) is not a file.")
    with open(uri, "rb") as source, open(local, "wb") as copy:
        shutil.copyfileobj(source, copy, _CHUNK)
    return local


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # Reads in chunks.


def _module_name(entry: str, is_dir: bool) -> Optional[str]:
    """The module a top-level entry (a folder or a file) of an installed package adds, if any."""
    if is_dir:
        return None if entry.endswith((".dist-info", ".egg-info")) or entry == "__pycache__" else entry
    for suffix in (*importlib.machinery.EXTENSION_SUFFIXES, ".py", ".pyc"):
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return None


def _installed_modules(site: str) -> Set[str]:
    """The top-level modules of the installed folder `site` (pip's `bin/` of generated scripts is none)."""
    modules = set()
    for entry in os.listdir(site):
        path = os.path.join(site, entry)
        if entry.endswith(".pth"):
            modules.add(entry)  # Refused by name: never a module, and a site folder would run it.
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if entry == "bin" and is_dir and not any(_module_name(f, False) for f in os.listdir(path)):
            continue
        module = _module_name(entry, is_dir)
        if module is not None:
            modules.add(module)
    return modules


def _check_wheel_name(uri: str) -> None:
    """Refuses a `.whl` whose file name is no wheel's (pip would refuse it; a cached install must too)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename  # pip's dependency.

    try:
        parse_wheel_filename(os.path.basename(uri))
    except InvalidWheelFilename as e:
        raise checks.InputError(f"`task_package` ({checks.shown(uri)}) is not a wheel's file name: {e}") from None


def _wheel_top_levels(uri: str, local: str) -> Set[str]:
    """The top-level modules the wheel at `local` would add, read from its file list before it is installed.

    Raises:
        checks.InputError: For a file that is no zip, one that installs scripts, headers, data or `.pth` files,
            or one whose modules differ from those its `top_level.txt` declares.
    """
    try:
        with zipfile.ZipFile(local) as wheel:
            names = wheel.namelist()
            declared_files = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/top_level.txt")]
            declared = ({line.strip() for line in wheel.read(declared_files[0]).decode().splitlines() if line.strip()}
                        if declared_files else None)
    except (zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise checks.InputError(f"`task_package` ({uri}) is not a valid wheel: {e}.") from None
    found: Set[str] = set()
    for name in names:
        first, _, rest = name.partition("/")
        if first.endswith(".data"):
            kind, _, inner = rest.partition("/")
            if kind not in ("purelib", "platlib"):
                raise checks.InputError(
                    f"`task_package` ({uri}) installs {kind} files ({name}); a task package holds modules only.")
            first, _, rest = inner.partition("/")
        if first.endswith(".pth"):
            raise checks.InputError(f"`task_package` ({uri}) holds a .pth file ({name}); it is not installed.")
        module = _module_name(first, is_dir=bool(rest)) if first else None
        if module is not None:
            found.add(module)
    declared_modules = {d.split("/")[0] for d in declared} if declared is not None else found
    if not found <= declared_modules:
        raise checks.InputError(
            f"`task_package` ({uri}) adds module(s) {sorted(found - declared_modules)} that its top_level.txt does "
            f"not declare ({sorted(declared_modules)}). Nothing was installed.")
    return found


def _check_modules(uri: str, modules: Iterable[str], site: str) -> None:
    """Refuses a module name that shadows one this interpreter can import, or that `$TFPIPE_TASK_MODULES` does
    not allow."""
    from tfpipe.components.tasks import ALLOWED_MODULES_ENV, allowed_modules  # pylint: disable=cyclic-import

    allowed = allowed_modules()
    others = [p for p in sys.path if os.path.abspath(p or ".") != os.path.abspath(site)]
    for module in sorted(modules):
        if not module.isidentifier():
            raise checks.InputError(f"`task_package` ({uri}) adds {module!r}, which is not a module name.")
        if allowed is not None and not any(m == module or m.startswith(f"{module}.") for m in allowed):
            raise checks.InputError(
                f"`task_package` ({uri}) adds module {module!r}, which is not among the task modules this image "
                f"accepts (${ALLOWED_MODULES_ENV}={','.join(allowed)}). Nothing was installed or imported.")
        if module in sys.builtin_module_names or _imported_elsewhere(module, site) or (
                importlib.machinery.PathFinder.find_spec(module, others) is not None):
            raise checks.InputError(
                f"`task_package` ({uri}) adds module {module!r}, which would shadow the image's own {module!r}. "
                "Rename the package's module, or install it into the image. Nothing was installed or imported.")


def _imported_elsewhere(module: str, site: str) -> bool:
    """Whether `module` is imported from somewhere other than `site`."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return False
    where = [getattr(loaded, "__file__", None) or "", *(getattr(loaded, "__path__", None) or [])]
    inside = os.path.abspath(site) + os.sep
    return not any(w and os.path.abspath(w).startswith(inside) for w in where)


def _file_hashes(site: str) -> Dict[str, str]:
    """SHA-256 of every file under `site` (links refused), by path relative to it."""
    hashes = {}
    for folder, dirs, files in os.walk(site):
        dirs[:] = [d for d in dirs if d != "__pycache__"]  # Python writes these as it imports.
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                hashes[os.path.relpath(path, site)] = "link"
                continue
            hashes[os.path.relpath(path, site)] = _sha256(path)
    return hashes


def _manifest_path(root: str, digest: str) -> str:
    return os.path.join(root, f"{digest}.{_MANIFEST}")


def _cached(root: str, digest: str) -> Optional[str]:
    """The cached install of the package with SHA-256 `digest`, if its owner, mode and files match the manifest
    its install recorded; a folder that does not match is moved aside and removed."""
    site = os.path.join(root, digest)
    if not os.path.lexists(site):
        return None
    manifest_path = _manifest_path(root, digest)
    try:
        info = os.lstat(site)
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        manifest_info = os.lstat(manifest_path)
        ok = (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
              and manifest_info.st_uid == os.getuid() and not manifest_info.st_mode & 0o077
              and manifest.get("sha256") == digest and manifest.get("files") == _file_hashes(site))
    except (OSError, ValueError, AttributeError):
        ok = False
    if ok:
        for folder, dirs, _ in os.walk(site):  # Bytecode is not in the record: Python writes it again on import.
            if "__pycache__" in dirs:
                shutil.rmtree(os.path.join(folder, "__pycache__"))
        return site
    print(f"task_package | the cached install {site} does not match its record; installing again", flush=True)
    stale = tempfile.mkdtemp(prefix=".stale-", dir=root)
    os.rename(site, os.path.join(stale, "site"))
    shutil.rmtree(stale, ignore_errors=True)
    if os.path.lexists(manifest_path):
        os.remove(manifest_path)
    return None


def _install(uri: str, local: str, root: str, digest: str, modules: Optional[Set[str]]) -> str:
    """Installs `local` with pip into `<root>/<digest>` and records the hash of every installed file."""
    staging = tempfile.mkdtemp(prefix=f".{digest}-", dir=root)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-input", "--no-compile",
         "--disable-pip-version-check", "--target", staging, local],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise checks.InputError(f"`task_package` ({uri}) could not be installed by pip: {last}")
    installed = _installed_modules(staging)
    if modules is not None and not installed <= modules:
        shutil.rmtree(staging, ignore_errors=True)
        raise checks.InputError(f"`task_package` ({uri}) installed module(s) {sorted(installed - modules)} that "
                                "its wheel does not list. Nothing was imported.")
    try:
        _check_modules(uri, installed, staging)  # An sdist's modules are known only now.
    except checks.InputError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(staging, 0o700)
    site = os.path.join(root, digest)
    manifest = {"uri": uri, "sha256": digest, "files": _file_hashes(staging)}
    fd, partial = tempfile.mkstemp(prefix=f".{digest}-", suffix=".json", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    try:
        os.rename(staging, site)  # Atomic: another step installing the same file may have won.
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        os.remove(partial)
        if _cached(root, digest) is None:
            raise checks.InputError(f"`task_package` ({uri}) could not be installed: another install of it in "
                                    f"{root} does not match its record.") from None
        return site
    os.replace(partial, _manifest_path(root, digest))
    return site


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


def install_task_package(uri: Optional[str]) -> Optional[TaskPackage]:
    """Checks and installs the task package at `uri` (once per file content), and puts it first on `sys.path`.

    Args:
        uri: A `.whl` (or, where the image allows, a `.tar.gz` or `.zip` source distribution) on gs://, a /gcs/
            mount or a local path; None or "" does nothing.

    Returns:
        The installed package (its SHA-256 and folder), or None.

    Raises:
        checks.InputError: If this image refuses task packages (or sdists), the file cannot be read, adds a module
            it does not declare, one that shadows the image's or one the allow-list refuses, pip cannot install it,
            or a dependency is missing.
    """
    uri = checks.check_package_uri("task_package", uri)
    if uri is None:
        return None
    _check_enabled(uri)
    wheel = uri.endswith(".whl")
    if wheel:
        _check_wheel_name(uri)
    elif os.environ.get(SDISTS_ENV, "").strip().lower() != "allow":
        raise checks.InputError(
            f"`task_package` ({checks.shown(uri)}) is a source distribution, whose build code would run at "
            f"install: give a wheel (`pip wheel --no-deps .`), or set ${SDISTS_ENV}=allow in the image.")
    root = _cache_root()
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as download:
        local = _fetch(uri, download)
        digest = _sha256(local)
        modules = _wheel_top_levels(uri, local) if wheel else None
        site = os.path.join(root, digest)
        if modules is not None:
            _check_modules(uri, modules, site)
        if _cached(root, digest) is None:
            site = _install(uri, local, root, digest, modules)
    missing = _missing_requirements(site)
    if missing:
        raise checks.InputError(
            f"`task_package` ({uri}) needs {missing}, which the image does not have: add them to a derived image "
            "(FROM the tfpipe image, then pip install), or use such an image instead of task_package."
        )
    if site not in sys.path:
        sys.path.insert(0, site)
    importlib.invalidate_caches()
    print(f"task_package | installed {uri} (sha256 {digest}) into {site}", flush=True)
    return TaskPackage(uri=uri, sha256=digest, site=site)
