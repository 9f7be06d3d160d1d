"""The `tfpipe` command: run-local, compile, submit, specs.

    tfpipe run-local [--task digits] [--task-config JSON] [--train-steps N] [--model-dir URI] [--pipeline-root DIR]
    tfpipe compile --backend gke|vertex [--image REF] [--train-resources SPEC] ... -o pipeline.yaml
    tfpipe submit pipeline.yaml --host URL | --vertex --project P --region R --pipeline-root gs://... [...]
    tfpipe specs [--out DIR] [--image REF]
"""

import argparse
import json
import sys
from typing import Dict, List, Optional

from components import kfp_components


def _key_values(pairs: List[str], what: str) -> Dict[str, str]:
    values = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"tfpipe: `{what}` must be KEY=VALUE, got {pair!r}")
        values[key] = value
    return values


def _parameters(pairs: List[str]) -> Dict[str, object]:
    """`--param k=v`: values are JSON when they parse as JSON (numbers, booleans), else strings."""
    out: Dict[str, object] = {}
    for key, value in _key_values(pairs, "--param").items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_run_local(args: argparse.Namespace) -> int:
    from pipelines.local_run import run_local

    summary = run_local(
        task=args.task, task_config=args.task_config, train_steps=args.train_steps, model_dir=args.model_dir,
        pipeline_root=args.pipeline_root, thresholds=args.thresholds, best_metric=args.best_metric,
        best_mode=args.best_mode, export_dir=args.export_dir, baseline_model_uri=args.baseline_model_uri,
        final_evaluate=args.final_evaluate,
    )
    print("\n== tfpipe run-local: summary ==")
    for line in summary.lines():
        print(line)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from kfp import compiler

    from pipelines.train_eval_export import build_pipeline

    profiles = {step: spec for step, spec in (("train", args.train_resources), ("eval", args.eval_resources),
                                              ("export", args.export_resources)) if spec}
    secrets: Dict[str, Dict[str, str]] = {}
    for item in args.secret:
        name, sep, pair = item.partition(":")
        key, eq, env = pair.partition("=")
        if not (sep and eq and name and key and env):
            raise SystemExit(f"tfpipe compile: `--secret` must be NAME:KEY=ENV_VAR, got {item!r}")
        secrets.setdefault(name, {})[key] = env
    pipeline = build_pipeline(backend=args.backend, image=args.image, profiles=profiles,
                              train_retries=args.train_retries, secret_env=secrets,
                              train_replicas=args.train_replicas)
    compiler.Compiler().compile(pipeline, args.output)
    print(f"compiled {args.backend} pipeline for image {args.image} to {args.output}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from pipelines import submit

    params = _parameters(args.param)
    caching = None if args.caching is None else args.caching == "on"
    if args.vertex:
        result = submit.submit_to_vertex(
            args.package, project=args.project, region=args.region, pipeline_root=args.pipeline_root,
            parameter_values=params, service_account=args.service_account,
            labels=_key_values(args.label, "--label"), enable_caching=caching, display_name=args.run_name,
            network=args.network, dry_run=args.dry_run,
        )
    else:
        if not args.host:
            raise SystemExit("tfpipe submit: give --host URL (KFP) or --vertex with --project and --region")
        result = submit.submit_to_kfp(
            args.package, host=args.host, arguments=params, run_name=args.run_name,
            experiment_name=args.experiment, namespace=args.namespace, enable_caching=caching,
            service_account=args.service_account,
        )
    if result.dry_run:
        print(json.dumps(result.request, indent=2, sort_keys=True, default=str))
    else:
        print(f"run id: {result.run_id}")
        print(f"link:   {result.url}")
    return 0


def cmd_specs(args: argparse.Namespace) -> int:
    from components import specs

    for path in specs.write_specs(args.out, args.image):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tfpipe` command."""
    parser = argparse.ArgumentParser(prog="tfpipe", description="TensorFlow training on Kubeflow Pipelines and Vertex AI.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run-local", help="Run the whole pipeline locally under kfp.local.")
    run.add_argument("--task", default="digits", help="Registered task name or package.module:factory.")
    run.add_argument("--task-config", default="{}", help="The task's config as a JSON object.")
    run.add_argument("--train-steps", type=int, default=300, help="Global step to train up to.")
    run.add_argument("--model-dir", default="", help="Run directory (local or gs://); default: under the pipeline root.")
    run.add_argument("--pipeline-root", default="local_outputs", help="Where kfp.local keeps the steps' outputs.")
    run.add_argument("--thresholds", default='{"accuracy": ">= 0.9"}', help="Export gate, a JSON object.")
    run.add_argument("--best-metric", default="accuracy", help="Metric that picks the best checkpoint.")
    run.add_argument("--best-mode", default="higher", choices=["higher", "lower"])
    run.add_argument("--export-dir", default="", help="Also export to <export-dir>/<step>/.")
    run.add_argument("--baseline-model-uri", default="", help="Export only if the model beats this tfpipe export.")
    run.add_argument("--final-evaluate", action="store_true", help="Evaluate the exported checkpoint once more.")
    run.set_defaults(func=cmd_run_local)

    comp = sub.add_parser("compile", help="Compile the pipeline for a backend.")
    comp.add_argument("--backend", required=True, choices=["gke", "vertex"])
    comp.add_argument("--image", default=kfp_components.DEFAULT_IMAGE, help="Container image of the steps.")
    for step in ("train", "eval", "export"):
        comp.add_argument(f"--{step}-resources", default="",
                          help=f"Resources of the {step} step, e.g. 'cpu=8,memory=32G,gpu=l4:1,spot' or 'tpu=v5e:2x2'.")
    comp.add_argument("--train-retries", type=int, default=3, help="Retries of the train step (preemption).")
    comp.add_argument("--train-replicas", type=int, default=1,
                      help="Train on N workers (MultiWorkerMirroredStrategy): a Vertex worker pool of N replicas, "
                           "or a TFJob on GKE (needs the Kubeflow training operator).")
    comp.add_argument("--secret", action="append", default=[],
                      help="GKE: expose Kubernetes secret key KEY of secret NAME as ENV_VAR in every step "
                           "(NAME:KEY=ENV_VAR; repeatable). Only names go into the YAML.")
    comp.add_argument("-o", "--output", required=True, help="The pipeline YAML to write.")
    comp.set_defaults(func=cmd_compile)

    subm = sub.add_parser("submit", help="Submit a compiled pipeline to KFP or Vertex AI.")
    subm.add_argument("package", help="The compiled pipeline YAML.")
    subm.add_argument("--host", help="KFP API endpoint, e.g. https://kfp.example.com.")
    subm.add_argument("--namespace", help="KFP namespace (multi-user clusters).")
    subm.add_argument("--experiment", help="KFP experiment name.")
    subm.add_argument("--vertex", action="store_true", help="Submit to Vertex AI Pipelines.")
    subm.add_argument("--project", help="Google Cloud project (Vertex).")
    subm.add_argument("--region", help="Vertex region, e.g. us-central1.")
    subm.add_argument("--pipeline-root", help="gs:// pipeline root (Vertex).")
    subm.add_argument("--network", help="VPC network for the job (Vertex).")
    subm.add_argument("--service-account", help="Service account the run uses.")
    subm.add_argument("--label", action="append", default=[], help="KEY=VALUE label (Vertex); repeatable.")
    subm.add_argument("--param", action="append", default=[], help="KEY=VALUE pipeline parameter; repeatable.")
    subm.add_argument("--run-name", help="Display name of the run.")
    subm.add_argument("--caching", choices=["on", "off"], help="Override every step's caching.")
    subm.add_argument("--dry-run", action="store_true", help="Vertex: print the request instead of sending it.")
    subm.set_defaults(func=cmd_submit)

    spec = sub.add_parser("specs", help="Regenerate component_specs/ from components/.")
    from components.specs import SPEC_DIR

    spec.add_argument("--out", default=str(SPEC_DIR))
    spec.add_argument("--image", default=kfp_components.DEFAULT_IMAGE)
    spec.set_defaults(func=cmd_specs)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the `tfpipe` command line."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # Bad input: a clear message, no traceback.
        print(f"tfpipe {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
