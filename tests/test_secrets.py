"""No credential, token or key in compiled YAML, logs or artifacts; secrets reach steps by reference only."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from tfpipe.pipelines import cli
from tfpipe.pipelines.train_eval_export import build_pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Planted in the environment of a local run; none may surface anywhere the run writes.
PLANTED = {
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "ya29.planted-token-0123456789abcdef",
    "AWS_SECRET_ACCESS_KEY": "planted/AWS/secret+key/0123456789abcdefghij",
    "TFPIPE_TEST_API_KEY": "AIzaPlantedKey0123456789abcdefghijklmnop",
}
CREDENTIAL_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bya29\.[0-9A-Za-z_-]{10,}"),  # OAuth access tokens.
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids.
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),  # Google API keys.
    re.compile(r'"private_key"\s*:'),  # Service-account key files.
]


def scan(text: str, where: str) -> None:
    for value in PLANTED.values():
        assert value not in text, f"a planted secret leaked into {where}"
    for pattern in CREDENTIAL_PATTERNS:
        assert not pattern.search(text), f"something like a credential ({pattern.pattern}) is in {where}"


def scan_tree(root: pathlib.Path) -> int:
    count = 0
    for path in root.rglob("*"):
        if path.is_file():
            scan(path.read_bytes().decode("latin-1"), str(path))
            count += 1
    return count


def test_secret_env_is_by_reference_and_commands_are_argument_lists(tmp_path):
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "--backend", "gke", "--image", "reg/tfpipe:2",
                     "--secret", "data-creds:token=DATA_TOKEN", "--secret", "data-creds:user=DATA_USER",
                     "-o", str(out)]) == 0
    spec, platform = yaml.safe_load_all(out.read_text())
    for executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        (secret,) = executor["secretAsEnv"]
        assert secret["secretName"] == "data-creds" or secret.get("secretNameParameter")
        assert {(e["secretKey"], e["envVar"]) for e in secret["keyToEnv"]} == {("token", "DATA_TOKEN"),
                                                                              ("user", "DATA_USER")}
    scan(out.read_text(), "the compiled YAML")
    # Parameters travel as separate arguments, never spliced into a shell string.
    containers = {n: e["container"] for n, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    assert len(containers) >= 6  # Every step but the importer runs a container.
    for name, container in containers.items():
        for part in container.get("command", []):
            assert "{{$.inputs.parameters" not in part, name
        assert all(isinstance(a, str) for a in container.get("args", []))


@pytest.mark.parametrize(
    "secret_env, backend, message",
    [
        ({"Bad_Name": {"k": "ENV"}}, "gke", r"secret name 'Bad_Name' is not a Kubernetes name"),
        ({"creds": {"k": "1ENV"}}, "gke", r"`secret_env\['creds'\]\['k'\]` must be an environment variable name"),
        ({"creds": {"k": "ENV"}}, "vertex", r"`secret_env` needs backend 'gke'"),
        *(({"creds": {"tok": env}}, "gke", rf"`secret_env\['creds'\]\['tok'\]` \('{env}'\) would override a "
           r"variable that chooses the step's code, libraries, identity or settings; accepted: any other name")
          for env in ("LD_PRELOAD", "PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "TFPIPE_TASK_PACKAGES", "TF_CONFIG",
                      "path")),
    ],
)
def test_secret_env_is_validated(secret_env, backend, message):
    with pytest.raises(ValueError, match=message):
        build_pipeline(backend=backend, secret_env=secret_env)


def test_compile_refuses_a_secret_that_overrides_a_protected_variable(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert cli.main(["compile", "--backend", "gke", "--image", "reg/tfpipe:2", "--secret", "creds:tok=LD_PRELOAD",
                     "-o", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "('LD_PRELOAD') would override a variable" in line and not out.exists()
    from tfpipe.components.train import tfjob as tfjob_train

    with pytest.raises(ValueError, match=r"\('PYTHONPATH'\) would override"):  # A user's own DAG's TFJob too.
        tfjob_train._secret_env_vars({"creds": {"tok": "PYTHONPATH"}})


def test_local_run_logs_and_artifacts_hold_no_credentials(tmp_path):
    root = tmp_path / "root"
    env = {**os.environ, **PLANTED, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-m", "tfpipe.pipelines.cli", "run-local", "--pipeline-root", str(root), "--train-steps", "100"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    scan(out.stdout + out.stderr, "the run's log")
    assert scan_tree(root) > 20  # Executor outputs, checkpoints, records, reports, the SavedModel.


FROM_ENV_CONFIG = {"data_uri": {"from_env": "DIGITS_DATA"}, "api_token": {"from_env": "SERVICE_TOKEN"},
                   "batch_size": 32}


def _step(name, env, *flags):
    out = subprocess.run(
        [sys.executable, "-m", f"tfpipe.components.{name}", "--task=tests.support.token_task:build",
         f"--task_config={json.dumps(FROM_ENV_CONFIG)}", *flags],
        cwd=ROOT, env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=600,
    )
    return out.returncode, out.stdout + out.stderr


@pytest.mark.timeout(600)  # Six step processes one after another, on a shared 2-core machine.
def test_from_env_values_are_stored_as_names_only_and_a_rotated_one_resumes(tmp_path):
    from tfpipe.components.tasks import digits
    from tfpipe.controller_core import eval_records, run_dir

    data = tmp_path / "data-planted-path-5f0c2e7a9b"  # The data location is a secret too: a value like any other.
    digits.write_tfrecords(str(data))
    token, rotated = "tok-planted-9d8c7b6a5f4e3d2c1b", "tok-rotated-0a1b2c3d4e5f6a7b8c"
    model_dir, output, serving = tmp_path / "run", tmp_path / "model", tmp_path / "serving"
    env = {"DIGITS_DATA": str(data), "SERVICE_TOKEN": token}
    logs = []
    for name, flags in [
        ("train", ["--train_steps=40", "--steps_per_loop=20", "--checkpoint_interval=20"]),
        ("continuous_eval", ["--poll_interval=0.1", "--idle_timeout=60"]),
        ("evaluate", ["--checkpoint=best", "--eval_name=final"]),
        ("export", [f"--output_path={output}", f"--export_dir={serving}"]),
    ]:
        rc, log = _step(name, env, f"--model_dir={model_dir}", *flags)
        assert rc == 0, log[-3000:]
        logs.append(log)
    # A rotated secret is the same config: training resumes, the evaluator keeps its records.
    env["SERVICE_TOKEN"] = rotated
    for name, flags in [("train", ["--train_steps=60", "--steps_per_loop=20", "--checkpoint_interval=20"]),
                        ("continuous_eval", ["--poll_interval=0.1", "--idle_timeout=60"])]:
        rc, log = _step(name, env, f"--model_dir={model_dir}", *flags)
        assert rc == 0, log[-3000:]
        logs.append(log)
    assert "train | done | step: 60" in logs[4]

    stored = run_dir.read_json(str(model_dir / "run_config.json"))["task_config"]
    assert stored["data_uri"] == {"from_env": "DIGITS_DATA"} and stored["api_token"] == {"from_env": "SERVICE_TOKEN"}
    best = eval_records.read_best_record(eval_records.eval_dir(str(model_dir), "validation"))
    assert best["step"] in (20, 40, 60) and best["eval_identity"]["task_config"]["api_token"] == {
        "from_env": "SERVICE_TOKEN"}
    files = 0
    for root in (model_dir, output, serving):
        for path in root.rglob("*"):
            if path.is_file():
                text = path.read_bytes().decode("latin-1")
                for value in (str(data), data.name, token, rotated):
                    assert value not in text, f"a from_env value leaked into {path}"
                files += 1
    assert files > 20
    for log in logs:
        for value in (data.name, token, rotated):
            assert value not in log, f"a from_env value leaked into a step's log: {log[-2000:]}"


@pytest.mark.parametrize(
    "config, value",
    [
        ({"data_uri": {"from_env": "PLANTED"}}, "http://planted-5e6f7a8b9c.example/data"),  # Not an accepted URI.
        ({"data_uri": {"from_env": "PLANTED"}}, "/no/such/planted-5e6f7a8b9c"),  # Holds no TFRecords.
        ({"batch_size": {"from_env": "PLANTED"}}, "planted-5e6f7a8b9c"),  # A string where an integer goes.
    ],
)
def test_errors_never_echo_a_from_env_value(tmp_path, config, value):
    out = subprocess.run(
        [sys.executable, "-m", "tfpipe.components.train", "--task=digits", f"--task_config={json.dumps(config)}",
         f"--model_dir={tmp_path}/run", "--train_steps=10"],
        cwd=ROOT, env={**os.environ, "PLANTED": value, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode in (1, 2), out.stdout[-2000:] + out.stderr[-2000:]
    assert "planted-5e6f7a8b9c" not in out.stdout + out.stderr, out.stderr[-2000:]
    assert "PLANTED" in out.stderr  # The variable's name says where the value came from.
