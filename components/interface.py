"""Component interfaces: each component's inputs, declared once.

An `Input` says everything about one input: its name, type, default, one-line
help and the rule that checks it (from `tfpipe.checks`). A component's
`Interface` lists its inputs, and everything else is derived from it or checked
against it:

* the entry point's absl flags (`Interface.define_flags`, `Interface.flag_values`);
* the signature of each component's `run(...)` and the checks it starts with, before any work
  (`Interface.takes_inputs`);
* the pipeline's parameters (`tfpipe.pipelines.train_eval_export`) and a
  replica's argument list (`Interface.argv`);
* the KFP component functions' signatures and the rows of `docs/inputs.md`, which
  `tests/test_interfaces.py` compares with the declarations
  (a new input declared in one place only fails that test).

No TensorFlow and no kfp here: the pipeline builder and the `tfpipe` command use it.
"""

import dataclasses
import functools
import inspect
import types
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar

from tfpipe import checks
from tfpipe.components.common import data as data_lib
from tfpipe.components.common import vertex_env

REQUIRED = object()  # The default of an input that has none.

Check = Callable[[str, Any], Any]
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of a component: a KFP parameter, an absl flag and a `run()` keyword of one name.

    Attributes:
        name: The name everywhere (KFP input, `--flag`, keyword argument, pipeline parameter).
        type: `str`, `int`, `float` or `bool`: the KFP parameter type and the flag's type.
        help: One line for `--help`, the KFP docstring and the pipeline's parameter docs.
        default: The default, or `REQUIRED`.
        check: `check(name, value)` returns the value in normal form or raises `ValueError`.
        choices: For an enumeration: the accepted values (checked, and shown by `--help`).
        kfp: Whether the KFP component has it as a parameter (False: an entry-point flag whose value KFP
            provides otherwise, e.g. an output artifact's path).
        pipeline: Whether the train → evaluate → export pipeline exposes it as a parameter.
        artifact: For an input KFP gives as an artifact: the `kfp.dsl` artifact class name (e.g. `Dataset`); the
            KFP function takes it as an optional `Input[<artifact>]`, the entry point and `run()` as a URI (see
            `tfpipe.components.common.data`).
    """

    name: str
    type: type
    help: str
    default: Any = REQUIRED
    check: Optional[Check] = None
    choices: Tuple[str, ...] = ()
    kfp: bool = True
    pipeline: bool = True
    artifact: str = ""

    @property
    def required(self) -> bool:
        """Whether the input has no default."""
        return self.default is REQUIRED

    def validate(self, value: Any) -> Any:
        """Checks `value` and returns it in normal form."""
        if self.choices:
            return checks.check_choice(self.name, value, self.choices)
        if self.check is not None:
            return self.check(self.name, value)
        return value


@dataclasses.dataclass(frozen=True)
class Relation:
    """A rule between inputs, checked once each of them is checked and set (not None).

    Attributes:
        names: The inputs it relates.
        check: `check(*values)` (in the order of `names`, in normal form) raises `checks.InputError`, naming them.
    """

    names: Tuple[str, ...]
    check: Callable[..., None]


@dataclasses.dataclass(frozen=True)
class Interface:
    """The inputs of one component, in the order of its signature (required ones first), and rules between them."""

    name: str
    inputs: Tuple[Input, ...]
    relations: Tuple[Relation, ...] = ()

    def __post_init__(self) -> None:
        names = [i.name for i in self.inputs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"component {self.name!r} declares input(s) {duplicated} twice.")

    def __getitem__(self, name: str) -> Input:
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(f"component {self.name!r} has no input {name!r}; its inputs are {self.names()}.")

    def names(self, *, kfp_only: bool = False) -> List[str]:
        """The input names, in order (only KFP parameters with `kfp_only`)."""
        return [i.name for i in self.inputs if i.kfp or not kfp_only]

    def check(self, values: Mapping[str, Any], *, fill_defaults: bool = False) -> types.SimpleNamespace:
        """Checks every declared input in `values`, in declaration order.

        Args:
            values: Input name -> value; names that are not inputs are passed through unchecked.
            fill_defaults: Also check and include the declared default of every input `values` lacks.

        Returns:
            A namespace of the values in normal form (parsed JSON, URIs without `/`, None for "not set").

        Raises:
            checks.InputError: For the first bad or missing required value, naming the input.
        """
        checked = dict(values)
        for item in self.inputs:
            if item.name in values:
                checked[item.name] = item.validate(values[item.name])
            elif item.required:
                raise checks.InputError(f"`{item.name}` is required: {item.help}")
            elif fill_defaults:
                checked[item.name] = item.validate(item.default)
        self.check_relations(checked)
        return types.SimpleNamespace(**checked)

    def check_relations(self, checked: Mapping[str, Any]) -> None:
        """Checks the rules between inputs whose values (checked, in normal form) are all set in `checked`."""
        for relation in self.relations:
            if all(checked.get(name) is not None for name in relation.names):
                relation.check(*(checked[name] for name in relation.names))

    def signature(self, **extra: Any) -> inspect.Signature:
        """The keyword-only signature of a function taking these inputs (and `extra` keywords with defaults)."""
        parameters = [inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, annotation=item.type,
                                        default=inspect.Parameter.empty if item.required else item.default)
                      for item in self.inputs]
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                       for name, default in extra.items()]
        return inspect.Signature(parameters)

    def takes_inputs(self, **extra: Any) -> Callable[[F], F]:
        """Decorator for a component's `run(**inputs)`: its signature is these inputs, checked and completed.

        The decorated function is called with a namespace of every input, checked and in normal form (defaults
        filled in; an empty `model_dir` or `export_dir` takes Vertex AI's output directory where a custom job sets
        one, `tfpipe.components.common.vertex_env`, and a data input that is not given Vertex's `AIP_*_DATA_URI`,
        `tfpipe.components.common.data`), and the `extra` keywords (e.g. where an output artifact goes), before
        it does any work.
        Unknown keywords are a `TypeError`, as for any Python function.

        Args:
            **extra: Keywords the function takes besides the inputs, with their defaults.
        """
        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            def run(**kwargs: Any) -> Any:
                unknown = sorted(set(kwargs) - set(self.names()) - set(extra))
                if unknown:
                    raise TypeError(f"{self.name}.run() got unexpected keyword(s) {unknown}; its inputs are "
                                    f"{self.names()}.")
                inputs = {k: v for k, v in kwargs.items() if k not in extra}
                unset_dirs = {i.name: i.default for i in self.inputs
                              if i.name in vertex_env.DEFAULTS and not i.required}
                inputs = vertex_env.with_defaults({**unset_dirs, **inputs})
                unset_data = {i.name: i.default for i in self.inputs if i.name in data_lib.NAMES}
                inputs = data_lib.vertex_defaults({**unset_data, **inputs})
                options = {k: kwargs.get(k, default) for k, default in extra.items()}
                return fn(self.check(inputs, fill_defaults=True), **options)

            run.__signature__ = self.signature(**extra)  # type: ignore[attr-defined]
            return run  # type: ignore[return-value]

        return decorate

    def define_flags(self, flag_values: Any = None) -> None:
        """Defines one absl flag per input (`--name`), typed, with its default and help."""
        from absl import flags

        flag_values = flags.FLAGS if flag_values is None else flag_values
        for item in self.inputs:
            default = None if item.required else item.default
            if item.choices:
                flags.DEFINE_enum(item.name, default, list(item.choices), item.help, flag_values=flag_values)
            else:
                define = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                          bool: flags.DEFINE_bool}[item.type]
                define(item.name, default, item.help, flag_values=flag_values)
        required = [i.name for i in self.inputs if i.required]
        if required:
            flags.mark_flags_as_required(required, flag_values=flag_values)

    def flag_values(self, flag_values: Any = None) -> Dict[str, Any]:
        """The parsed flags, as `run()` keywords."""
        from absl import flags

        flag_values = flags.FLAGS if flag_values is None else flag_values
        return {item.name: flag_values[item.name].value for item in self.inputs}

    def document(self, fn: Callable[..., Any], outputs: Mapping[str, str]) -> Callable[..., Any]:
        """Gives a KFP component function a Google-style docstring whose `Args:` come from the declarations.

        KFP reads the docstring when it builds the component: the inputs' help becomes their description in the
        compiled spec and the UIs. `fn`'s own docstring is kept as the summary.

        Args:
            fn: The component function.
            outputs: A description of each output artifact parameter (`Output[...]`) of `fn`.

        Returns:
            `fn`, documented.
        """
        lines = [inspect.cleandoc(fn.__doc__ or self.name), "", "Args:"]
        for parameter in inspect.signature(fn).parameters:
            help_text = outputs[parameter] if parameter in outputs else self[parameter].help
            lines.append(f"    {parameter}: {help_text}")
        fn.__doc__ = "\n".join(lines)
        return fn

    def argv(self, values: Mapping[str, Any]) -> List[str]:
        """`--name=value` arguments for the entry point (one list item each, no shell), for the given inputs."""
        out = []
        for item in self.inputs:
            if item.name in values:
                value = values[item.name]
                if item.type is bool:
                    value = "true" if value else "false"
                elif isinstance(value, data_lib.DataRef):
                    value = value.to_json()
                elif value is None and item.artifact:
                    continue  # A data input that was not given.
                out.append(f"--{item.name}={value}")
        return out


def graph_function(name: str, summary: str, inputs: Sequence[Input], body: Callable[[Dict[str, Any]], Any],
                   defaults: Optional[Mapping[str, Any]] = None, returns: Any = None) -> Callable[..., Any]:
    """A function for `@dsl.pipeline` whose parameters are `inputs`: a pipeline's signature derived, not typed.

    KFP builds a pipeline from its function's signature and docstring, and calls it with one channel per
    parameter, in order; the function passes them to `body` as a mapping.

    Args:
        name: The function's name.
        summary: The first line of its docstring (`Args:` come from each input's help).
        inputs: The parameters, in order; required ones (no default in `defaults` either) first.
        body: Called with `{name: channel}` while KFP traces the pipeline.
        defaults: Pipeline-level defaults that replace the inputs' own (e.g. a task for the whole pipeline).
        returns: The outputs' `NamedTuple` type, for a graph component with outputs (`body` returns them).

    Returns:
        The function.
    """
    defaults = dict(defaults or {})
    parameters = []
    for item in inputs:
        default = defaults.get(item.name, item.default)
        annotation: Any = item.type
        if item.artifact:  # An optional artifact input of the graph (`Input[Dataset] = None`).
            from kfp import dsl

            annotation, default = dsl.Input[getattr(dsl, item.artifact)], None
        parameters.append(inspect.Parameter(
            item.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
            default=inspect.Parameter.empty if default is REQUIRED else default))
    parameters.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    names = [p.name for p in parameters]

    def pipeline(*channels: Any) -> Any:
        return body(dict(zip(names, channels)))

    pipeline.__name__ = pipeline.__qualname__ = name
    pipeline.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=inspect.Signature.empty if returns is None else returns)
    if returns is not None:
        pipeline.__annotations__ = {"return": returns}
    helps = {item.name: item.help for item in inputs}
    pipeline.__doc__ = "\n".join([summary, "", "Args:", *(f"    {n}: {helps[n]}" for n in names)])
    return pipeline


def union(interfaces: Iterable[Interface], *, exclude: Sequence[str] = ()) -> List[Input]:
    """The pipeline inputs of several components: each name once, first declaration wins.

    Raises:
        ValueError: If two components declare one name with different types (a pipeline parameter has one type).
    """
    found: Dict[str, Input] = {}
    for interface in interfaces:
        for item in interface.inputs:
            if not item.pipeline or item.name in exclude:
                continue
            seen = found.setdefault(item.name, item)
            if seen.type is not item.type:
                raise ValueError(f"input {item.name!r} is {seen.type.__name__} in one component and "
                                 f"{item.type.__name__} in {interface.name!r}.")
    return list(found.values())
