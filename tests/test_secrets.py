"""No credential, token or key in compiled YAML, logs or artifacts; secrets reach steps by reference only."""

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
    ],
)
def test_secret_env_is_validated(secret_env, backend, message):
    with pytest.raises(ValueError, match=message):
        build_pipeline(backend=backend, secret_env=secret_env)


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
