"""What an image can rely on about `task_package` (tfpipe.components.tasks.packages): wheels only, the modules a
wheel adds checked before anything is installed or imported, a private install cache verified before use, the
file streamed, and the package's hash recorded by training and checked by every later step."""

import base64
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from tfpipe import checks
from tfpipe.components import tasks
from tfpipe.components.tasks import packages

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_wheel(folder: pathlib.Path, name: str, files: dict, *, top_level=None, filename=None) -> pathlib.Path:
    """Writes a wheel of distribution `name` holding `files` (path -> text), as `bdist_wheel` lays one out."""
    info = f"{name}-1.0.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    entries[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if top_level is not None:
        entries[f"{info}/top_level.txt"] = "".join(f"{t}\n" for t in top_level)
    record = []
    for path, text in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    entries[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    wheel = folder / (filename or f"{name}-1.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in entries.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private install cache for the test; sys.path and the modules the test's packages added are restored."""
    monkeypatch.setenv(packages.CACHE_ENV, str(tmp_path / "cache"))
    before_path, before_modules = list(sys.path), set(sys.modules)
    yield tmp_path / "cache"
    sys.path[:] = before_path
    for name in set(sys.modules) - before_modules:
        if name.split(".")[0] in ("pkgtask", "goodtask", "evil"):
            del sys.modules[name]


def _sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


RUNS = "import os\nopen(os.environ['TFPIPE_TEST_MARKER'], 'w').write('ran')\n"


@pytest.mark.parametrize(
    "allowed, message",
    [
        ("tfpipe", r"adds module 'evil', which is not among the task modules this image accepts"),
        ("evil,tensorboard", r"adds module 'tensorboard', which would shadow the image's own 'tensorboard'"),
        ("", r"adds module 'tensorboard', which would shadow the image's own 'tensorboard'"),
    ],
)
def test_a_wheel_that_shadows_a_module_or_leaves_the_allow_list_is_refused_before_install(
        tmp_path, cache, monkeypatch, allowed, message):
    marker = tmp_path / "ran"
    monkeypatch.setenv("TFPIPE_TEST_MARKER", str(marker))
    monkeypatch.setenv("TFPIPE_TASK_MODULES", allowed)
    wheel = make_wheel(tmp_path, "evil", {"evil/__init__.py": "", "tensorboard/__init__.py": RUNS},
                       top_level=["evil", "tensorboard"])
    with pytest.raises(checks.InputError, match=message):
        tasks.install_task_package(str(wheel))
    assert not (cache / _sha256(wheel)).exists()  # Nothing was installed...
    import tensorboard  # ...and the image's module is the one imported.

    assert not marker.exists() and "site-packages" in tensorboard.__file__


def test_a_wheel_with_modules_its_top_level_does_not_declare_is_refused(tmp_path, cache):
    wheel = make_wheel(tmp_path, "goodtask", {"goodtask/__init__.py": "", "sneaky_extra.py": ""},
                       top_level=["goodtask"])
    with pytest.raises(checks.InputError, match=r"adds module\(s\) \['sneaky_extra'\] that its top_level.txt does "
                                                r"not declare \(\['goodtask'\]\)"):
        tasks.install_task_package(str(wheel))


@pytest.mark.parametrize("files, message", [
    ({"goodtask/__init__.py": "", "goodtask-1.0.data/scripts/run": "#!/bin/sh\n"}, r"installs scripts files"),
    ({"goodtask/__init__.py": "", "zz.pth": "import os\n"}, r"holds a .pth file \(zz.pth\)"),
])
def test_a_wheel_with_files_outside_its_modules_is_refused(tmp_path, cache, files, message):
    with pytest.raises(checks.InputError, match=message):
        tasks.install_task_package(str(make_wheel(tmp_path, "goodtask", files)))


def test_sdists_are_refused_unless_the_image_allows_them(tmp_path, cache, monkeypatch):
    sdist = tmp_path / "evil-1.0.tar.gz"
    sdist.write_bytes(b"\x1f\x8b not read")
    with pytest.raises(checks.InputError, match=r"is a source distribution, whose build code would run at install: "
                                                r"give a wheel .* or set \$TFPIPE_TASK_PACKAGE_SDISTS=allow"):
        tasks.install_task_package(str(sdist))
    monkeypatch.setenv(packages.SDISTS_ENV, "allow")  # Allowed: it goes on to pip (which cannot read this one).
    with pytest.raises(checks.InputError, match=r"could not be installed by pip"):
        tasks.install_task_package(str(sdist))


def test_an_image_can_turn_task_packages_off(tmp_path, cache, monkeypatch):
    wheel = make_wheel(tmp_path, "goodtask", {"goodtask/__init__.py": ""})
    monkeypatch.setenv(packages.SWITCH_ENV, "off")
    with pytest.raises(checks.InputError, match=r"this image does not install task packages "
                                                r"\(\$TFPIPE_TASK_PACKAGES=off\)"):
        tasks.install_task_package(str(wheel))
    monkeypatch.setenv(packages.SWITCH_ENV, "maybe")
    with pytest.raises(checks.InputError, match=r"\$TFPIPE_TASK_PACKAGES must be 'on' or 'off', got 'maybe'"):
        tasks.install_task_package(str(wheel))
    assert not cache.exists() or not any(cache.iterdir())


def test_a_planted_cache_folder_is_rebuilt_never_imported(tmp_path, cache, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("TFPIPE_TEST_MARKER", str(marker))
    wheel = make_wheel(tmp_path, "goodtask", {"goodtask/__init__.py": "GOOD = True\n"})
    site = pathlib.Path(tasks.install_task_package(str(wheel)).site)
    assert site == cache / _sha256(wheel)
    for plant in (
        lambda: (site / "goodtask" / "__init__.py").write_text(RUNS),  # A file changed after the install.
        lambda: (shutil.rmtree(site), (site / "goodtask").mkdir(parents=True),  # A folder planted in its place.
                 (site / "goodtask" / "__init__.py").write_text(RUNS)),
    ):
        plant()
        sys.modules.pop("goodtask", None)
        assert tasks.install_task_package(str(wheel)).site == str(site)
        import goodtask

        assert goodtask.GOOD and not marker.exists()


def test_the_cache_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv(packages.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = pathlib.Path(packages._cache_root())
    assert root == tmp_path / "xdg" / "tfpipe-task-packages" and root.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv(packages.CACHE_ENV, str(shared))
    with pytest.raises(checks.InputError, match=r"must be a folder of this user .* closed to others .* mode 0o777"):
        tasks.install_task_package(str(make_wheel(tmp_path, "goodtask", {"goodtask/__init__.py": ""})))


def test_a_cached_package_under_another_name_is_still_checked(tmp_path, cache):
    wheel = make_wheel(tmp_path, "goodtask", {"goodtask/__init__.py": ""})
    tasks.install_task_package(str(wheel))
    evil = tmp_path / "evil.whl"
    shutil.copyfile(wheel, evil)  # The same content (cached), under a name that is no wheel's.
    with pytest.raises(checks.InputError, match=r"`task_package` \('.*evil.whl'\) is not a wheel's file name"):
        tasks.install_task_package(str(evil))


def test_a_missing_gcs_package_is_one_line(cache, gcs_emulator, gcs_bucket):
    uri = f"{gcs_bucket}/packages/none-1.0-py3-none-any.whl"
    with pytest.raises(checks.InputError) as raised:
        tasks.install_task_package(uri)
    assert str(raised.value) == f"`task_package` ({uri}) does not exist (HTTP 404)."


def test_the_package_file_is_streamed(tmp_path):
    big = tmp_path / "big-1.0-py3-none-any.whl"
    with open(big, "wb") as f:
        f.truncate(512 << 20)
    code = (
        "import resource, sys\n"
        "from tfpipe import checks\n"
        "from tfpipe.components.tasks import packages\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    packages.install_task_package(sys.argv[1])\n"
        "except checks.InputError as e:\n"
        "    assert 'is not a valid wheel' in str(e), e\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(big)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, packages.CACHE_ENV: str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) < 64  # MiB more at peak, for a 512 MiB file.


def _task_wheel(folder: pathlib.Path, variant: str) -> pathlib.Path:
    folder.mkdir()
    return make_wheel(folder, "pkgtask", {
        "pkgtask/__init__.py": f"# {variant}\nfrom tfpipe.components.tasks.digits import build\n"})


def _forget_pkgtask(cache):
    """What a new step's process starts without: the package's modules and its folder on sys.path."""
    for name in [m for m in sys.modules if m.split(".")[0] == "pkgtask"]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(cache))]


def test_the_run_records_its_package_and_later_steps_refuse_another(tmp_path, cache):
    from tfpipe.components.evaluate import runtime as evaluate
    from tfpipe.components.export import runtime as export
    from tfpipe.components.train import runtime as train

    first, second = _task_wheel(tmp_path / "a", "first"), _task_wheel(tmp_path / "b", "second")
    model_dir = str(tmp_path / "run")
    train.run(task="pkgtask:build", task_package=str(first), task_config={"batch_size": 32}, model_dir=model_dir,
              train_steps=10, steps_per_loop=10)
    stored = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert stored["task_package_sha256"] == _sha256(first)
    for step in (
        lambda: evaluate.run(task="pkgtask:build", task_package=str(second), task_config={"batch_size": 32},
                             model_dir=model_dir),
        lambda: export.run(task="pkgtask:build", task_package=str(second), task_config={"batch_size": 32},
                           model_dir=model_dir, output_path=str(tmp_path / "model"), checkpoint="latest"),
        lambda: train.run(task="pkgtask:build", task_package=str(second), task_config={"batch_size": 32},
                          model_dir=model_dir, train_steps=20, steps_per_loop=10),
    ):
        _forget_pkgtask(cache)
        with pytest.raises(checks.InputError, match=(
                rf"`model_dir` \(.*\) was trained with the task_package of sha256 {_sha256(first)}; this step has "
                rf"sha256 {_sha256(second)}: another package runs other code. Give the package file training used")):
            step()
    _forget_pkgtask(cache)
    assert evaluate.run(task="pkgtask:build", task_package=str(first), task_config={"batch_size": 32},
                        model_dir=model_dir).step == 10
