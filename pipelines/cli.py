"""The `tfpipe` command: run-local, compile, submit, specs.

    tfpipe run-local [--task digits] [--task-config JSON] [--train-steps N] [--model-dir URI] [--pipeline-root DIR]
                     [--runner subprocess|docker [--image REF]]
    tfpipe compile --backend gke|vertex [--image REF] [--task NAME] [--task-config JSON] [--param KEY=VALUE ...]
                   [--train-resources SPEC] ... -o pipeline.yaml
    tfpipe submit pipeline.yaml --host URL | --vertex --project P --region R --pipeline-root gs://... [...]
    tfpipe specs [--out DIR] [--image REF]

A user error (a bad option, a bad value, a missing optional extra) is one line on
stderr and exit status 2, never a traceback; a backend that refuses a submission is
one line and exit status 1. Nothing here imports TensorFlow (`run-local` starts
processes that do).
"""

import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List, NoReturn, Optional

from tfpipe import checks
from tfpipe.components import kfp_components
from tfpipe.pipelines import dag
from tfpipe.pipelines import vertex as vertex_defaults
from tfpipe.pipelines.local_run import RUNNERS

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message}{self._suggestion(message)} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's signature.
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def _suggestion(self, message: str) -> str:
        """`; did you mean --train-steps?` for an unrecognized option close to a known one."""
        import difflib

        if not message.startswith("unrecognized arguments:"):
            return ""
        known = {option: action.option_strings[0] for action in self._active_parser()._actions
                 for option in action.option_strings}  # Any spelling -> the first (dashed) one.
        for word in message.split(":", 1)[1].split():
            flag = word.split("=", 1)[0]
            if flag.startswith("--"):
                close = difflib.get_close_matches(flag, list(known), n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {known[close[0]]}?"
        return ""

    def _active_parser(self) -> argparse.ArgumentParser:
        """The subcommand's parser when the command line names one (its options are the ones to suggest)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for word in getattr(self, "_argv", []):
                    if word in action.choices:
                        return action.choices[word]
        return self


def _key_values(pairs: List[str], what: str) -> Dict[str, str]:
    values = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise checks.InputError(f"`{what}` must be KEY=VALUE, got {checks.shown(pair)}")
        values[key] = value
    return values


def _secret_env(items: List[str]) -> Dict[str, Dict[str, str]]:
    """`--secret NAME:KEY=ENV` options as `{secret name: {key: env var}}` (the names are checked when building)."""
    secrets: Dict[str, Dict[str, str]] = {}
    for item in items:
        name, sep, pair = item.partition(":")
        key, eq, env = pair.partition("=")
        if not (sep and eq and name and key and env):
            raise checks.InputError(f"`--secret` must be NAME:KEY=ENV_VAR, got {checks.shown(item)}")
        secrets.setdefault(name, {})[key] = env
    return secrets


def _check_output_file(path: str) -> str:
    """Checks that `--output` can be written (its folder exists and takes a file), before anything is built."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise checks.InputError(f"`--output` ({checks.shown(path)}): the folder {folder} does not exist; create it first")
    if os.path.isdir(path):
        raise checks.InputError(f"`--output` ({checks.shown(path)}) is a folder; give a file name such as pipeline.yaml")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tfpipe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise checks.InputError(f"`--output` ({checks.shown(path)}) cannot be written: {e.strerror or e}") from None
    return path


def _compile_to(pipeline: object, path: str) -> None:
    """Compiles `pipeline` into a file beside `path`, then renames it into place (a failure leaves no half file)."""
    from kfp import compiler

    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=".tfpipe-", suffix=os.path.splitext(path)[1] or ".yaml", dir=folder)
    os.close(fd)
    try:
        compiler.Compiler().compile(pipeline, partial)
        os.replace(partial, path)
    except OSError as e:
        raise ValueError(f"`--output` ({checks.shown(path)}) cannot be written: {e.strerror or e}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def cmd_run_local(args: argparse.Namespace) -> int:
    from tfpipe.pipelines.local_run import INPUTS, run_local

    params = {name: getattr(args, name) for name in INPUTS if hasattr(args, name)}
    summary = run_local(pipeline_root=args.pipeline_root, runner=args.runner, image=args.image,
                        verbose=args.verbose, **params)
    print("\n== tfpipe run-local: summary ==")
    for line in summary.lines():
        print(line)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from tfpipe.pipelines.train_eval_export import build_pipeline, pipeline_image

    profiles = {step: spec for step, spec in (("train", args.train_resources), ("eval", args.eval_resources),
                                              ("export", args.export_resources)) if spec}
    output = _check_output_file(args.output)
    texts = _key_values(args.param, "--param")
    for name, given in (("task", args.task), ("task_config", args.task_config)):
        if given is not None:
            if name in texts:
                raise checks.InputError(
                    f"`--{name.replace('_', '-')}` and `--param {name}=...` both set {name}; give one")
            texts[name] = given
    options = dict(backend=args.backend, image=args.image, profiles=profiles, train_retries=args.train_retries,
                   secret_env=_secret_env(args.secret), train_replicas=args.train_replicas,
                   vertex_tensorboard=args.vertex_tensorboard, register_model=args.register_model,
                   parent_model=args.parent_model, serving_image=args.serving_image,
                   data_inputs=args.data_input)
    defaults = _typed_defaults(texts, build_pipeline(**options, defaults={"task": "digits"}))
    pipeline = build_pipeline(**options, defaults=defaults)
    image = pipeline_image(args.image, args.backend)  # The image it was built for (`--image` or $TFPIPE_IMAGE).
    _compile_to(pipeline, output)
    baked = f" with defaults {sorted(defaults)}" if defaults else ""
    print(f"compiled {args.backend} pipeline for image {image}{baked} to {output}")
    return 0


def _typed_defaults(texts: Dict[str, str], pipeline: object) -> Dict[str, object]:
    """`--param` texts typed and checked as `tfpipe submit` types and checks a run's parameters (against the
    pipeline's own compiled declaration)."""
    if not texts:
        return {}
    import tempfile

    import yaml
    from kfp import compiler

    from tfpipe.pipelines import submit

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "declared.yaml")
        compiler.Compiler().compile(pipeline, path)
        with open(path) as f:
            spec = next(yaml.safe_load_all(f))
    values = submit.parameters_from_text(spec, texts)
    return submit.check_parameters(spec, values, name="--param")


def cmd_submit(args: argparse.Namespace) -> int:
    from tfpipe.pipelines import submit

    spec = submit.load_pipeline_package(args.package)[0]
    params = submit.parameters_from_text(spec, _key_values(args.param, "--param"))
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
            raise checks.InputError("give --host URL (KFP) or --vertex with --project and --region")
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
    from tfpipe.components import specs

    out = args.out or specs.checkout_spec_dir()
    if out is None:
        raise checks.InputError(
            "`--out` is required outside a tfpipe checkout (the specs are regenerated into a checkout's "
            "component_specs/; the installed package's copies are never rewritten)"
        )
    for path in specs.write_specs(out, args.image):
        print(path)
    return 0


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """One option per pipeline parameter (`--train-steps` for `train_steps`), from the components' declarations."""
    from tfpipe.pipelines.local_run import INPUTS, LOCAL_DEFAULTS
    from tfpipe.pipelines.train_eval_export import PIPELINE_DEFAULTS

    for name, item in INPUTS.items():
        default = {**PIPELINE_DEFAULTS, **LOCAL_DEFAULTS}.get(name, item.default)
        shown = {"": "none", 0: "every checkpoint"}.get(default, default) if name == "max_to_keep" else (
            default if default != "" else "none")
        options = dict(dest=name, default=argparse.SUPPRESS, help=f"{item.help} (default: {shown})")
        # The entry points' spelling (`--train_steps`) is accepted too.
        spellings = list(dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"]))
        if item.type is bool:
            parser.add_argument(*spellings, action=argparse.BooleanOptionalAction, **options)
        else:
            parser.add_argument(*spellings, type=item.type, metavar=item.type.__name__.upper(),
                                choices=item.choices or None, **options)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tfpipe` command."""
    parser = _Parser(prog="tfpipe", description="TensorFlow training on Kubeflow Pipelines and Vertex AI.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run-local", help="Run the whole pipeline locally under kfp.local.",
        description="Runs check-inputs, train, continuous-eval and the gated export under kfp.local, then prints a "
                    "summary. Every pipeline parameter is an option. Taken from the task unless given: the best "
                    "metric and its direction (Task.best_metric / best_mode; digits: accuracy, higher). No export "
                    "gate unless --thresholds is given.")
    run.add_argument("--pipeline-root", default="local_outputs",
                     help="Where kfp.local keeps the steps' outputs (default: %(default)s).")
    run.add_argument("--runner", default="subprocess", choices=RUNNERS,
                     help="Run each step as a subprocess of this Python, or in a container of --image (needs "
                          "`pip install 'tfpipe[docker]'` and a Docker engine; default: %(default)s).")
    run.add_argument("--image", default=None,
                     help="--runner docker: the image of the steps, in the local engine (default: $TFPIPE_IMAGE, "
                          f"else {kfp_components.LOCAL_IMAGE}, what `make image` builds).")
    run.add_argument("--verbose", action="store_true",
                     help="Print everything the steps print (kfp.local's executor input and output, TensorFlow's "
                          "logs); by default only each step's status, progress and errors.")
    _add_pipeline_options(run)
    run.set_defaults(func=cmd_run_local)

    comp = sub.add_parser("compile", help="Compile the pipeline for a backend.")
    comp.add_argument("--backend", required=True, choices=["gke", "vertex"])
    comp.add_argument("--image", default=None,
                      help="Container image of the steps, pushed where the cluster can pull it (default: "
                           "$TFPIPE_IMAGE; one of the two is required). Build it with `make image IMAGE=REF`.")
    for step in ("train", "eval", "export"):
        comp.add_argument(f"--{step}-resources", default="",
                          help=f"Resources of the {step} step, e.g. 'cpu=8,memory=32G,gpu=l4:1,spot' or 'tpu=v5e:2x2'.")
    comp.add_argument("--train-retries", type=int, default=None,
                      help="Retries of the train step (preemption); default: "
                           f"{dag.SETTINGS['train'].retry.num_retries}.")
    comp.add_argument("--train-replicas", type=int, default=1,
                      help="Train on N workers (MultiWorkerMirroredStrategy): a Vertex worker pool of N replicas, "
                           "or a TFJob on GKE (needs the Kubeflow training operator).")
    comp.add_argument("--secret", action="append", default=[],
                      help="GKE: expose Kubernetes secret key KEY of secret NAME as ENV_VAR in every step "
                           "(NAME:KEY=ENV_VAR; repeatable). Only names go into the YAML.")
    comp.add_argument("--vertex-tensorboard", default="", metavar="RESOURCE",
                      help="Vertex: upload the train and continuous-eval curves to this Vertex AI TensorBoard "
                           "(projects/P/locations/L/tensorboards/ID); both steps then run as custom jobs, as the "
                           "run's service account.")
    comp.add_argument("--register-model", default="", metavar="NAME",
                      help="Vertex: register the gated export in Vertex AI Model Registry under this display name.")
    comp.add_argument("--parent-model", default="", metavar="RESOURCE",
                      help="Vertex, with --register-model: register a new version of this model "
                           "(projects/P/locations/L/models/ID).")
    comp.add_argument("--serving-image", default=vertex_defaults.DEFAULT_SERVING_IMAGE, metavar="IMAGE",
                      help="Vertex, with --register-model: the prebuilt TensorFlow serving container "
                           "(default: %(default)s).")
    comp.add_argument("--data-input", action="append", default=[], choices=["train_data", "eval_data"],
                      help="Give the pipeline this data input: a URI parameter of that name, imported as a Dataset "
                      "for every step; repeatable.")
    comp.add_argument("--task", default=None,
                      help="The pipeline's default task (required for an image not named tfpipe: a derived image "
                           "that runs your task; default: digits).")
    comp.add_argument("--task-config", default=None, metavar="JSON", help="The pipeline's default task config.")
    comp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                      help="A default of any pipeline parameter, typed and checked as `tfpipe submit --param` is; "
                           "repeatable.")
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
    subm.add_argument("--param", action="append", default=[],
                      help="KEY=VALUE pipeline parameter, typed as the pipeline declares it (STRING parameters keep "
                           "the text as it is; LIST and STRUCT are JSON); repeatable.")
    subm.add_argument("--run-name", help="Display name of the run.")
    subm.add_argument("--caching", choices=["on", "off"], help="Override every step's caching.")
    subm.add_argument("--dry-run", action="store_true", help="Vertex: print the request instead of sending it.")
    subm.set_defaults(func=cmd_submit)

    spec = sub.add_parser("specs", help="Regenerate component_specs/ of a tfpipe checkout from components/.")
    spec.add_argument("--out", default=None,
                      help="Folder for the YAML files; default: component_specs/ of the checkout holding the "
                           "current directory (required elsewhere).")
    spec.add_argument("--image", default=kfp_components.LOCAL_IMAGE,
                      help="Container image of the components (default: the tag `make image` builds, which the "
                           "packaged specs name).")
    spec.set_defaults(func=cmd_specs)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the `tfpipe` command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    from tfpipe.pipelines.local_run import ContainerEngineError, LocalInputError, LocalRunError
    from tfpipe.pipelines.submit import SubmitError

    try:
        return args.func(args)
    except (*checks.INPUT_ERRORS, ContainerEngineError, LocalInputError) as e:
        # Bad input, a missing extra, no Docker engine for --runner docker: one line, no traceback.
        print(f"tfpipe {args.command}: {e}", file=sys.stderr)
        return USAGE_ERROR
    except (SubmitError, LocalRunError) as e:  # The backend refused or is unreachable; a local step failed.
        print(f"tfpipe {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
