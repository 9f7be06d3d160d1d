"""The tfpipe wheel as users get it: built from this checkout, installed (not editable) into a fresh venv.

Session fixtures, built once per test session (the first pytest-xdist worker that needs one builds it, under a lock,
in the folder the workers share; the others use it):

    def test_from_the_wheel(installed) -> None:   # the fresh venv's python
        subprocess.run([str(installed), "-m", "tfpipe.components.train", ...], cwd=user_project, ...)

The fresh environment borrows the test environment's third-party packages through a `.pth` line (so no download
is needed); tfpipe itself comes only from the wheel. `wheel_env` is an environment for its processes that holds
nothing of the checkout (no `PYTHONPATH`, the venv's `bin` first on `PATH`).
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Callable

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def wheel_env(python: pathlib.Path, home: pathlib.Path, **extra: str) -> dict:
    """The environment of a process of the installed wheel's venv: its `bin` first, no `PYTHON*` variables."""
    return {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _once_per_session(tmp_path_factory, name: str, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """The folder `name`, filled by `build(folder)` once per session, whichever worker asks first."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # Each worker's base temp is a folder of the session's.
        shared = shared.parent
    folder = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file is closed, also if this worker dies.
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # A build that failed half-way.
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def _build_wheel(out: pathlib.Path) -> None:
    # Built from a copy of the working tree's files that git tracks or would (committed, staged, edited or new,
    # not ignored), so the build leaves nothing in the checkout and sees no stray files.
    source = out / "source"
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():  # Not a file deleted but not yet staged.
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out / "dist"),
                    str(source)], check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The tfpipe wheel of this checkout."""
    (built,) = (_once_per_session(tmp_path_factory, "wheel", _build_wheel) / "dist").glob("tfpipe-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh venv with the wheel installed; returns its python."""
    return _once_per_session(tmp_path_factory, "venv", lambda venv: _install(wheel, venv)) / "bin" / "python"


def _install(wheel: pathlib.Path, venv: pathlib.Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Every site-packages folder this interpreter sees (a venv may itself borrow another's through a .pth line).
    borrowed = [p for p in sys.path if p.rstrip("/").endswith("site-packages")]
    (pathlib.Path(site) / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=300)
