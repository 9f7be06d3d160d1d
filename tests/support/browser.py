"""Headless Chromium for tests: screenshots and DOM dumps of local HTML files, with bounded run times.

Chromium is a system package (Debian: ``apt-get install -y chromium``, installed by ``.ci/run``). Tests
that need it call ``require_chromium()``: it fails the test with a message naming ``.ci/run`` when the
browser is missing, or skips it when ``TFPIPE_SKIP_BROWSER=1`` is set.

Each run uses a fresh profile directory and no network services (no sync, no component updates, no
background networking), runs in its own process group and is killed, with every helper process it
started, when it exceeds its time limit::

    png = screenshot(html_path, tmp_path / "page.png")
    dom = dump_dom(html_path)
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import pytest

SKIP_ENV = "TFPIPE_SKIP_BROWSER"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "apt-get install -y chromium"
DEFAULT_TIMEOUT_S = 60.0

_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start.
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # Containers often have a tiny /dev/shm.
    "--hide-scrollbars",
    "--force-device-scale-factor=1",  # One CSS pixel = one PNG pixel.
)


class BrowserError(RuntimeError):
    """Chromium failed, produced nothing, or ran past its time limit."""


def find_chromium() -> str | None:
    """The Chromium executable: `chromium` on PATH, else Debian's /usr/bin/chromium; None if absent."""
    found = shutil.which("chromium")
    if found:
        return found
    return DEBIAN_CHROMIUM if os.access(DEBIAN_CHROMIUM, os.X_OK) else None


def require_chromium() -> str:
    """Returns the Chromium executable, or ends the calling test.

    Skips the test when ``TFPIPE_SKIP_BROWSER=1``; otherwise a missing Chromium fails it, since CI
    (``.ci/run``) is expected to install it.
    """
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser tests are turned off")
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            f"Chromium not found (neither `chromium` on PATH nor {DEBIAN_CHROMIUM}). The browser tests need it: "
            f"`.ci/run` must install it (`{INSTALL_HINT}`); locally install it the same way, or set "
            f"{SKIP_ENV}=1 to skip these tests.",
            pytrace=False,
        )
    return executable


def screenshot(
    html_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    *,
    window: tuple[int, int] = (1200, 2000),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    executable: str | None = None,
) -> pathlib.Path:
    """Renders a local HTML file and saves a PNG of the window (`window` = width, height in pixels).

    Raises:
        BrowserError: If Chromium fails, times out or writes no PNG.
    """
    png = pathlib.Path(png_path).resolve()
    png.unlink(missing_ok=True)
    width, height = window
    _run(
        [f"--screenshot={png}", f"--window-size={width},{height}", _file_url(html_path)],
        timeout_s=timeout_s,
        executable=executable,
    )
    if not png.is_file() or png.stat().st_size == 0:
        raise BrowserError(f"Chromium wrote no screenshot at {png} for {html_path}.")
    return png


def dump_dom(
    html_path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, executable: str | None = None
) -> str:
    """Loads a local HTML file and returns the DOM Chromium built from it, serialized as HTML.

    Raises:
        BrowserError: If Chromium fails, times out or prints no document.
    """
    out = _run(["--dump-dom", _file_url(html_path)], timeout_s=timeout_s, executable=executable)
    if "<html" not in out:
        raise BrowserError(f"Chromium printed no document for {html_path}: {out[:500]!r}")
    return out


def _file_url(path: str | os.PathLike[str]) -> str:
    """A file:// URL for an existing local file."""
    resolved = pathlib.Path(path).resolve()
    if not resolved.is_file():
        raise BrowserError(f"No such HTML file: {resolved}")
    return resolved.as_uri()


def _run(args: list[str], *, timeout_s: float, executable: str | None) -> str:
    """Runs Chromium with a fresh profile and the common flags; returns its stdout.

    Raises:
        BrowserError: On a non-zero exit or when it runs past `timeout_s` (then its whole process group
            is killed).
    """
    binary = executable or require_chromium()
    with tempfile.TemporaryDirectory(prefix="tfpipe-chromium-") as profile:
        command = [binary, *_FLAGS, f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Its own process group, so helpers can be killed with it.
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            _kill_group(process)
            raise BrowserError(f"Chromium ran past {timeout_s:g} s: {' '.join(command)}") from error
        finally:
            _kill_group(process)  # Leftover helper processes (zygote, GPU, renderer), if any.
    if process.returncode != 0:
        raise BrowserError(
            f"Chromium exited with {process.returncode}: {' '.join(command)}\n{stderr[-2000:]}"
        )
    return stdout


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Kills the process group this module started for `process` and reaps the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
