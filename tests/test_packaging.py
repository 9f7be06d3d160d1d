"""tfpipe as users install it: one `tfpipe` import package, specs inside the wheel, compile without TensorFlow.

The wheel is built from this checkout and installed (not editable) into a fresh virtual environment
(`tests/support/wheel.py`), then used from a project folder that has its own `components/` and `pipelines/`
packages, as KFP projects often do. The fresh environment borrows the test environment's third-party packages through a `.pth` line (so no
download is needed); tfpipe itself comes only from the wheel.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import textwrap
import zipfile

import pytest

from tests.support.wheel import wheel_env
from tfpipe.components import specs

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = {"tfpipe": "tfpipe", "controller_core": "tfpipe.controller_core",
                 "components": "tfpipe.components", "pipelines": "tfpipe.pipelines",
                 "component_specs": "tfpipe.component_specs"}


def _declared_packages() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)^\]", text, re.M | re.S).group(1)
    return set(re.findall(r'"([\w.]+)"', block))


def test_every_package_folder_is_declared():
    found = set()
    for folder, package in PACKAGE_ROOTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *relative)))
    assert found == _declared_packages()


def test_the_wheel_has_one_top_level_package_and_the_specs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"tfpipe"}
    assert not [n for n in names if n.startswith(("tfpipe/tests", "tfpipe/bench")) or "__pycache__" in n]
    archive = zipfile.ZipFile(wheel)
    for name in specs.SPEC_NAMES:  # The packaged specs are the checked-in ones.
        assert archive.read(f"tfpipe/component_specs/{name}.yaml") == (ROOT / "component_specs" / f"{name}.yaml").read_bytes()
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert archive.read(top_level).decode().split() == ["tfpipe"]


@pytest.fixture
def user_project(tmp_path) -> pathlib.Path:
    """A KFP project of a user's: its own `components` and `pipelines` packages."""
    project = tmp_path / "userproj"
    for package in ("components", "pipelines"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'user {package}'\n")
    (project / "components" / "preprocess.py").write_text(textwrap.dedent("""
        from kfp import dsl

        @dsl.component(base_image="python:3.11")
        def preprocess(text: str) -> str:
            return text.upper()
    """))
    (project / "pipelines" / "my_pipeline.py").write_text(textwrap.dedent("""
        from kfp import dsl

        from components.preprocess import preprocess
        from tfpipe.components import load_component

        train = load_component("train", image="registry.example.com/team/tfpipe:1")
        evaluate = load_component("evaluate", image="registry.example.com/team/tfpipe:1")

        @dsl.pipeline(name="user-pipeline")
        def user_pipeline(model_dir: str):
            preprocess(text="x")
            trained = train(task="digits", model_dir=model_dir, train_steps=50)
            evaluate(task="digits", model_dir=model_dir).after(trained)
    """))
    return project


def run(python: pathlib.Path, *args: str, cwd: pathlib.Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=cwd, env=wheel_env(python, cwd), capture_output=True, text=True,
                          timeout=timeout)


def test_users_own_packages_and_tfpipe_import_side_by_side(installed, user_project):
    out = run(installed, "-c", textwrap.dedent("""
        import sys
        import components, pipelines
        from pipelines.my_pipeline import user_pipeline
        import tfpipe.components, tfpipe.pipelines, tfpipe
        from kfp import compiler
        compiler.Compiler().compile(user_pipeline, "user.yaml")
        print(components.OWNER, "|", pipelines.OWNER, "|", tfpipe.__file__)
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """), cwd=user_project)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "user components | user pipelines |" in out.stdout and "site-packages/tfpipe/__init__.py" in out.stdout
    assert "tensorflow imported: False" in out.stdout
    compiled = (user_project / "user.yaml").read_text()
    assert "registry.example.com/team/tfpipe:1" in compiled and "comp-preprocess" in compiled


def test_entry_point_trains_from_a_user_project(installed, user_project):
    out = run(installed, "-m", "tfpipe.components.train", "--task=digits", "--model_dir=run", "--train_steps=20",
              "--steps_per_loop=10", "--checkpoint_interval=10", cwd=user_project)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train | done | step: 20" in out.stdout
    assert (user_project / "run" / "ckpt-20.index").exists()


def test_compile_and_submit_never_import_tensorflow(installed, user_project):
    out = run(installed, "-c", textwrap.dedent("""
        import sys
        from tfpipe.pipelines import cli
        assert cli.main(["compile", "--backend", "gke", "--image", "registry.example.com/t/tfpipe:1",
                         "--train-resources", "gpu=l4:1", "-o", "p.yaml"]) == 0
        assert cli.main(["compile", "--backend", "vertex", "--image", "registry.example.com/t/tfpipe:1",
                         "-o", "v.yaml"]) == 0
        assert cli.main(["submit", "v.yaml", "--vertex", "--project", "my-project", "--region", "us-central1",
                         "--pipeline-root", "gs://my-bucket/root", "--param", "train_steps=7",
                         "--param", 'thresholds={"rmse": "<= 0.3"}', "--dry-run"]) == 0
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """), cwd=user_project)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tensorflow imported: False" in out.stdout
    assert (user_project / "p.yaml").exists()
    assert '"thresholds": "{\\"rmse\\": \\"<= 0.3\\"}"' in out.stdout  # A STRING parameter stays a string.


def test_specs_load_from_the_installed_package(installed, user_project):
    out = run(installed, "-c", textwrap.dedent("""
        from kfp import components
        from tfpipe.components import COMPONENT_NAMES
        from tfpipe.components import load_component
        from tfpipe.components import spec_path
        for name in COMPONENT_NAMES:
            path = spec_path(name)
            assert "site-packages/tfpipe/component_specs" in str(path), path
            plain = components.load_component_from_file(str(path))
            mine = load_component(name, image="registry.example.com/t/tfpipe:2")
            assert plain.component_spec.name == mine.component_spec.name
            assert "registry.example.com/t/tfpipe:2" in str(mine.pipeline_spec.deployment_spec)
        print("ok")
    """), cwd=user_project)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_specs_command_never_writes_into_the_installed_package(installed, user_project):
    tfpipe = installed.parent / "tfpipe"
    out = subprocess.run([str(tfpipe), "specs"], cwd=user_project, capture_output=True, text=True, timeout=120,
                         env={"PATH": f"{installed.parent}:/usr/bin:/bin", "HOME": str(user_project)})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "`--out` is required outside a tfpipe checkout" in out.stderr
    written = run(installed, "-m", "tfpipe.pipelines.cli", "specs", "--out", "specs", cwd=user_project)
    assert written.returncode == 0, written.stderr[-2000:]
    assert sorted(p.name for p in (user_project / "specs").iterdir()) == sorted(
        f"{n}.yaml" for n in specs.SPEC_NAMES)
