"""The tfpipe wheel as users get it: built from this checkout, installed (not editable) into a fresh venv.

Session fixtures (each xdist worker that needs them builds them once):

    def test_from_the_wheel(installed) -> None:   # the fresh venv's python
        subprocess.run([str(installed), "-m", "tfpipe.components.train", ...], cwd=user_project, ...)

The fresh environment borrows the test environment's third-party packages through a `.pth` line (so no download
is needed); tfpipe itself comes only from the wheel. `wheel_env` is an environment for its processes that holds
nothing of the checkout (no `PYTHONPATH`, the venv's `bin` first on `PATH`).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def wheel_env(python: pathlib.Path, home: pathlib.Path, **extra: str) -> dict:
    """The environment of a process of the installed wheel's venv: its `bin` first, no `PYTHON*` variables."""
    return {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The tfpipe wheel of this checkout."""
    # Built from a copy of the working tree's files that git tracks or would (committed, staged, edited or new,
    # not ignored), so the build leaves nothing in the checkout and sees no stray files.
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():  # Not a file deleted but not yet staged.
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    (built,) = out.glob("tfpipe-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh venv with the wheel installed; returns its python."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Every site-packages folder this interpreter sees (a venv may itself borrow another's through a .pth line).
    borrowed = [p for p in sys.path if p.rstrip("/").endswith("site-packages")]
    (pathlib.Path(site) / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return python
