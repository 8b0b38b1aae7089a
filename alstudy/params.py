"""Experiment parameters: flat, commented defaults; YAML presets; strict validation.

Every key has a type, a default and an allowed range. Unknown keys, wrong types and
impossible values fail *before any work* with a message that names the key and what is
allowed (papermill only warns about unknown parameter names, so notebooks call
:func:`validate` on their parameter cell).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

__all__ = ["SCHEMA", "ParamError", "defaults", "validate", "load", "run_id", "strategy_specs", "collect", "check_keys", "check_against_data",
           "check_model", "describe", "read_yaml", "parse_value", "did_you_mean"]


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or out of its allowed range."""


@dataclass(frozen=True)
class Field:
    """One parameter: default, accepted types, allowed values in words and as a check."""

    default: Any
    types: tuple[type, ...]
    allowed: str
    check: Callable[[Any], bool] = lambda v: True
    help: str = ""
    semantic: bool = True  # part of the run's identity (run_id); False for where/how to run
    names: Callable[[], list[str]] | None = None  # registered names (for "did you mean")


def _choices(getter: Callable[[], list[str]]) -> Callable[[Any], bool]:
    return lambda v: v in getter()


def did_you_mean(name: Any, names: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the registered name closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), names, n=1) if isinstance(name, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _datasets() -> list[str]:
    from . import data
    return sorted(data.DATASETS)


def _models() -> list[str]:
    from . import models
    return sorted(models.MODELS)


def _cycle_metrics() -> list[str]:
    from . import cycle_metrics
    return cycle_metrics.available()


_INT, _NUM, _STR, _BOOL = (int,), (int, float), (str,), (bool,)
_NONE = (type(None),)

SCHEMA: dict[str, Field] = {
    # what
    "experiment": Field("quickstart", _STR, "a name (folder under results_dir)",
                        lambda v: bool(v) and "/" not in v, "experiment name", semantic=False),
    "dataset": Field("mnist", _STR, "a registered dataset", _choices(_datasets), "dataset name",
                     names=_datasets),
    "data_root": Field(None, _STR + _NONE, "a folder or null", help="folder of path-based datasets",
                       semantic=False),
    "data_seed": Field(0, _INT, "integer >= 0", lambda v: v >= 0, "seed of the train/test split"),
    "max_train": Field(None, _INT + _NONE, "integer >= 1 or null", lambda v: v is None or v >= 1,
                       "subsample the training pool (null = all)"),
    "max_test": Field(None, _INT + _NONE, "integer >= 1 or null", lambda v: v is None or v >= 1,
                      "subsample the test set (null = all)"),
    "data_options": Field({}, (dict,), "a mapping of dataset loader options",
                          help="e.g. {crop: 688} for cityscapes (alstudy.data.loader_options)"),
    "model": Field("small_cnn", _STR, "a registered model", _choices(_models), "task model",
                   names=_models),
    "model_options": Field({}, (dict,), "a mapping of model options", help="e.g. {width: 16}"),
    "strategies": Field(["random", "entropy"], (list, dict), "a list of strategy names or a "
                        "mapping label -> {strategy: name, option: value}",
                        lambda v: len(v) > 0, "strategies to compare"),
    "strategy_options": Field({}, (dict,), "a mapping strategy name -> {option: value}",
                              help="options applied to every use of a strategy name"),
    "seeds": Field([0, 1], (list,), "a non-empty list of distinct integers >= 0",
                   lambda v: len(v) > 0 and len(set(map(str, v))) == len(v)
                   and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v),
                   "one run per seed", semantic=False),
    # the AL protocol
    "initial_size": Field(20, _INT, "integer >= 1", lambda v: v >= 1, "initial labeled set size"),
    "initial_mode": Field("all_classes", _STR, "one of ['random', 'balanced', 'all_classes']",
                          lambda v: v in ("random", "balanced", "all_classes"),
                          "how the initial set is drawn"),
    "budget": Field(20, _INT, "integer >= 1", lambda v: v >= 1, "examples labeled per cycle"),
    "cycles": Field(5, _INT, "integer >= 0", lambda v: v >= 0, "acquisition cycles"),
    "candidates": Field("all", _INT + _STR, "integer >= 1 or 'all'",
                        lambda v: v == "all" or (isinstance(v, int) and v >= 1),
                        "random unlabeled subset scored per cycle"),
    "cycle_metrics": Field([], (list,), "a list of names from alstudy.cycle_metrics.CYCLE_METRICS",
                           lambda v: all(m in _cycle_metrics() for m in v) and len(set(v)) == len(v),
                           "per-cycle diagnostics recorded as extra metric rows"),
    "cycle_metric_samples": Field(None, _INT + _NONE, "integer >= 2 or null",
                                  lambda v: v is None or v >= 2,
                                  "cap on the unlabeled examples each cycle metric samples "
                                  "(null = each metric's own number)"),
    "cycle_metric_sizes": Field({}, (dict,), "a mapping cycle-metric name -> integer >= 2",
                                lambda v: all(m in _cycle_metrics() and isinstance(n, int)
                                              and not isinstance(n, bool) and n >= 2
                                              for m, n in v.items()),
                                "unlabeled examples a cycle metric samples per cycle "
                                "(a metric left out uses its own number)"),
    "warm_start": Field(False, _BOOL, "true or false", help="keep training the previous model"),
    # training
    "epochs": Field(10, _INT, "integer >= 1", lambda v: v >= 1, "epochs per cycle"),
    "batch_size": Field(96, _INT, "integer >= 1", lambda v: v >= 1, "training batch size"),
    "batch_split": Field("last_partial", _STR, "one of ['last_partial', 'equal']",
                         lambda v: v in ("last_partial", "equal"),
                         "last_partial: full batches + a smaller last one (the paper's loaders); "
                         "equal: nearly equal batches, no tiny last step"),
    "optimizer": Field("adam", _STR, "one of ['adam', 'sgd', 'sam', 'asam']",
                       lambda v: v in ("adam", "sgd", "sam", "asam"), "optimizer"),
    "lr": Field(1e-3, _NUM, "number > 0", lambda v: v > 0, "learning rate"),
    "momentum": Field(0.9, _NUM, "number in [0, 1)", lambda v: 0 <= v < 1, "SGD momentum"),
    "weight_decay": Field(0.0, _NUM, "number >= 0", lambda v: v >= 0, "weight decay"),
    "lr_milestones": Field([], (list,), "a list of epochs (integers >= 1)",
                           lambda v: all(isinstance(e, int) and e >= 1 for e in v),
                           "epochs at which lr *= lr_gamma"),
    "lr_gamma": Field(0.1, _NUM, "number in (0, 1]", lambda v: 0 < v <= 1, "lr decay factor"),
    "augment": Field("none", _STR, "one of ['none', 'crop_flip', 'ssd']",
                     lambda v: v in ("none", "crop_flip", "ssd"), "training augmentation"),
    "sam_rho": Field(0.05, _NUM, "number >= 0", lambda v: v >= 0, "SAM/ASAM radius"),
    "sam_base": Field("adam", _STR, "one of ['adam', 'sgd']", lambda v: v in ("adam", "sgd"),
                      "base optimizer of SAM/ASAM"),
    "eval_batch_size": Field(1024, _INT, "integer >= 1", lambda v: v >= 1,
                             "inference batch size", semantic=False),
    # where / how
    "device": Field("auto", _STR, "'auto', 'cpu', 'cuda' or 'cuda:N'",
                    lambda v: v in ("auto", "cpu") or re.fullmatch(r"cuda(:[0-9]+)?", v) is not None,
                    "auto = CUDA when present", semantic=False),
    "threads": Field(None, _INT + _NONE, "integer >= 1 or null", lambda v: v is None or v >= 1,
                     "torch CPU threads (null = $OMP_NUM_THREADS, else 1)", semantic=False),
    "results_dir": Field(os.environ.get("ALSTUDY_RESULTS", "results"), _STR, "a folder", lambda v: bool(v), "results root",
                         semantic=False),
    "run_id": Field(None, _STR + _NONE, "a folder name or null (derived from the params)",
                    lambda v: v is None or (bool(v) and "/" not in v), "run folder name",
                    semantic=False),
    "progress": Field(True, _BOOL, "true or false", help="show progress bars", semantic=False),
    "reuse_units": Field(True, _BOOL, "true or false",
                         help="copy a finished unit of the same configuration from another run "
                              "folder instead of running it (alstudy.unit_reuse)", semantic=False),
}


def defaults() -> dict[str, Any]:
    """A fresh copy of every key's default."""
    return {k: copy.deepcopy(f.default) for k, f in SCHEMA.items()}


def describe() -> str:
    """One line per key: name, default, allowed values, meaning."""
    return "\n".join(f"{k:16s} = {f.default!r:24s} # {f.allowed}; {f.help}" for k, f in SCHEMA.items())


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _plain(value: Any) -> Any:
    """NumPy scalars (``np.int64(0)``) as Python numbers, inside lists and mappings too."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _as_number(value: Any, field: Field) -> Any:
    """A numeric string (``"1e-3"``, as YAML 1.1 reads it) as a float, for number keys."""
    if float in field.types and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def validate(params: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Merge ``params`` and ``overrides`` over the defaults and check every key.

    Args:
        params: A (partial) parameter mapping, e.g. a notebook's ``globals()`` subset or a preset.
        **overrides: More keys (take precedence).

    Returns:
        The complete, validated parameter dict (strategy options are checked by building them).

    Raises:
        ParamError: Naming the key, the bad value and the allowed values.
    """
    if params is not None and not isinstance(params, Mapping):
        raise ParamError(f"parameters must be a mapping of key: value, not a {type(params).__name__} "
                         f"({params!r:.60})")
    given = dict(params or {})
    given.update(overrides)
    unknown = [k for k in given if k not in SCHEMA]
    if unknown:
        parts = [f"{k!r}" + did_you_mean(k, list(SCHEMA)) for k in unknown]
        raise ParamError(f"unknown parameter(s): {', '.join(parts)}; valid keys: {sorted(SCHEMA)}")
    out = defaults()
    out.update(_plain(copy.deepcopy(given)))
    for key, field in SCHEMA.items():
        value = out[key] = _as_number(out[key], field)
        if not _type_ok(value, field.types):
            raise ParamError(f"parameter {key!r} = {value!r} has type {type(value).__name__}; "
                             f"allowed: {field.allowed}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"parameter {key!r} = {value!r} is not a finite number; "
                             f"allowed: {field.allowed}")
        try:
            ok = field.check(value)
        except TypeError:
            ok = False
        if not ok:
            if field.names is not None:
                names = field.names()
                raise ParamError(f"parameter {key!r} = {value!r} is invalid{did_you_mean(value, names)}; "
                                 f"allowed: one of {names}")
            raise ParamError(f"parameter {key!r} = {value!r} is invalid; allowed: {field.allowed}")
    _check_models_and_strategies(out)
    return out


def strategy_specs(params: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Normalise ``strategies`` to ``{label: (strategy name, options)}``.

    A list entry ``"entropy"`` becomes ``{"entropy": ("entropy", strategy_options["entropy"])}``;
    a mapping entry ``label: {strategy: name, opt: value}`` keeps its label (``strategy``
    defaults to the label) and its options override ``strategy_options[name]``.
    """
    entries = params["strategies"]
    if isinstance(entries, list):
        if len(set(map(str, entries))) != len(entries):
            raise ParamError(f"parameter 'strategies' lists a name twice: {entries}")
        entries = {name: {} for name in entries}
    specs = {}
    for label, extra in entries.items():
        if not isinstance(label, str) or not isinstance(extra, (dict, type(None))):
            raise ParamError(f"parameter 'strategies': entry {label!r}: {extra!r} must be a name "
                             "or label: {strategy: name, option: value}")
        extra = dict(extra or {})
        name = extra.pop("strategy", label)
        opts = dict(params["strategy_options"].get(name, {}))
        opts.update(extra)
        specs[label] = (name, opts)
    return specs


def _check_models_and_strategies(p: dict[str, Any]) -> None:
    from . import models, strategies

    try:
        allowed = models.model_options(p["model"])
    except KeyError:
        allowed = {}
    bad = sorted(set(p["model_options"]) - set(allowed))
    if bad:
        raise ParamError(f"parameter 'model_options': unknown option(s) {bad} for model "
                         f"{p['model']!r}; allowed: {allowed}")
    for name in p["strategy_options"]:
        if name not in strategies.STRATEGIES:
            raise ParamError(f"parameter 'strategy_options': unknown strategy {name!r}"
                             f"{did_you_mean(name, strategies.available())}; "
                             f"available: {strategies.available()}")
    specs = strategy_specs(p)
    for label, (name, opts) in specs.items():
        try:
            strategies.build(name, **opts)
        except ValueError as err:
            raise ParamError(f"parameter 'strategies' entry {label!r}: {err}") from None
    unused = sorted(set(p["strategy_options"]) - {name for name, _ in specs.values()})
    if unused:
        raise ParamError(f"parameter 'strategy_options' sets options of {unused}, which "
                         f"{'is' if len(unused) == 1 else 'are'} not run; strategies run: "
                         f"{sorted({name for name, _ in specs.values()})} (remove the entry or add "
                         "the strategy to 'strategies')")
    if p["initial_mode"] == "balanced" and p["initial_size"] < 1:
        raise ParamError("parameter 'initial_size' must be >= 1")
    if p["candidates"] != "all" and p["candidates"] < p["budget"]:
        raise ParamError(f"parameter 'candidates' = {p['candidates']} is smaller than 'budget' = "
                         f"{p['budget']}; allowed: 'all' or an integer >= budget")
    if any(m > p["epochs"] for m in p["lr_milestones"]):
        raise ParamError(f"parameter 'lr_milestones' = {p['lr_milestones']} has an epoch beyond "
                         f"'epochs' = {p['epochs']}")


def check_against_data(p: dict[str, Any], n_train: int, num_classes: int | None, task: str) -> None:
    """Checks that need the dataset: the protocol must fit in the pool; the task must match.

    Raises:
        ParamError: Naming the key and the largest value that would fit.
    """
    need = p["initial_size"] + p["budget"] * p["cycles"]
    if need > n_train:
        raise ParamError(
            f"parameter 'budget' = {p['budget']} with 'cycles' = {p['cycles']} and 'initial_size' = "
            f"{p['initial_size']} needs {need} labels but the {p['dataset']!r} pool has {n_train}; "
            f"allowed: initial_size + budget * cycles <= {n_train}")
    if task == "detection" and p["initial_mode"] != "random":
        raise ParamError(f"parameter 'initial_mode' = {p['initial_mode']!r} needs one class per example; "
                         f"dataset {p['dataset']!r} is a detection task (box lists): use 'random'")
    if num_classes is not None and p["initial_mode"] != "random" and p["initial_size"] < num_classes:
        raise ParamError(f"parameter 'initial_size' = {p['initial_size']} is below the "
                         f"{num_classes} classes that initial_mode {p['initial_mode']!r} needs")
    if task in ("regression", "segmentation") and p["initial_mode"] != "random":
        raise ParamError(f"parameter 'initial_mode' = {p['initial_mode']!r} needs one class per "
                         f"example; dataset {p['dataset']!r} is a {task} task: use 'random'")
    augments = ("none", "ssd") if task == "detection" else ("none", "crop_flip")
    if p["augment"] not in augments:
        raise ParamError(f"parameter 'augment' = {p['augment']!r} does not apply to the {task} dataset "
                         f"{p['dataset']!r}; allowed: {list(augments)}")
    from . import models, strategies
    model_task = models.MODELS[p["model"]].task
    if model_task != task:
        raise ParamError(f"parameter 'model' = {p['model']!r} is a {model_task} model but dataset "
                         f"{p['dataset']!r} is a {task} task")
    for label, (name, opts) in strategy_specs(p).items():
        strat = strategies.build(name, **opts)
        if task not in strat.tasks:
            fits = sorted(n for n, c in strategies.STRATEGIES.items() if task in c.tasks)
            raise ParamError(f"parameter 'strategies': {label!r} supports {list(strat.tasks)} "
                             f"tasks, not the {task} dataset {p['dataset']!r}; strategies for "
                             f"{task}: {fits}")


def check_model(p: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int) -> None:
    """Checks that need the built model, before any training: MC-dropout strategies need dropout.

    The model is built only when a strategy of the MC-dropout family (``bald``, ``mc_entropy``,
    ``variation_ratio``) is run.

    Raises:
        ParamError: Naming the strategy, the model and how to fix it.
    """
    from . import models, strategies
    from .strategies.mc_dropout import _MCDropoutScore, active_dropout_modules

    needs = [label for label, (name, _) in strategy_specs(p).items()
             if issubclass(strategies.STRATEGIES[name], _MCDropoutScore)]
    if not needs:
        return
    net = models.build(p["model"], input_shape, num_outputs, **p["model_options"])
    if not active_dropout_modules(net):
        raise ParamError(f"parameter 'strategies': {needs} need a model with dropout, but model "
                         f"{p['model']!r} with model_options {p['model_options']} has none; set "
                         "'model_options: {dropout: 0.5}' (or drop these strategies)")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter and closer to YAML 1.2.

    A key given twice in one mapping is an error (PyYAML keeps the last one silently), and
    exponent floats without a dot (``1e-3``) are floats (PyYAML's YAML 1.1 rules read them as
    strings).
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _yaml_error(err: yaml.YAMLError) -> str:
    """A one-line description of a YAML error: what is wrong and where (line, column)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{' '.join(str(problem).split())}"


def read_yaml(path: str | Path, what: str = "params file") -> dict[str, Any]:
    """Read a YAML file that must hold a non-empty mapping of key: value.

    Duplicate keys are errors; ``1e-3`` is a float (see :class:`_StrictLoader`).

    Args:
        path: The file.
        what: What the file is, for the messages (``"params file"``, ``"batch file"``).

    Returns:
        The mapping.

    Raises:
        ParamError: One line naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise ParamError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise ParamError(f"{what} {str(path)!r} is a folder; give a YAML file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ParamError(f"{what} {str(path)!r} cannot be read: {err}") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ParamError(f"{what} {str(path)!r} is not valid YAML: {_yaml_error(err)}") from None
    if raw is None:
        raise ParamError(f"{what} {str(path)!r} is empty; it must hold a mapping of key: value")
    if not isinstance(raw, dict):
        raise ParamError(f"{what} {str(path)!r} must hold a mapping of key: value, "
                         f"not a {type(raw).__name__}")
    return raw


def parse_value(key: str, text: str) -> Any:
    """Parse one command-line value (``-p KEY VALUE``) as YAML, e.g. ``"[0, 1]"`` or ``1e-3``.

    Raises:
        ParamError: The value is not valid YAML (naming the key).
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ParamError(f"-p {key} {text!r}: the value is not valid YAML ({_yaml_error(err)}); "
                         "quote strings and write lists as \"[0, 1]\"") from None


def load(path: str | Path, **overrides: Any) -> dict[str, Any]:
    """Read a YAML preset, apply ``overrides`` and validate.

    Raises:
        ParamError: Bad file content (naming the file) or bad values.
    """
    raw = read_yaml(path)
    try:
        return validate(raw, **overrides)
    except ParamError as err:
        raise ParamError(f"{path}: {err}") from None


#: Keys left out of the run-id hash while at these values (keys added after runs were committed).
_HASH_SKIP_IF_DEFAULT = {"cycle_metrics": [], "batch_split": "last_partial", "data_options": {},
                         "cycle_metric_samples": None, "cycle_metric_sizes": {}}


def run_id(params: dict[str, Any]) -> str:
    """Folder name of a run: ``params['run_id']`` or ``<dataset>-<model>-<hash of semantics>``."""
    if params.get("run_id"):
        return params["run_id"]
    semantic = {k: v for k, v in params.items() if SCHEMA[k].semantic
                and not (k in _HASH_SKIP_IF_DEFAULT and v == _HASH_SKIP_IF_DEFAULT[k])}
    digest = hashlib.sha1(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()
    return f"{params['dataset']}-{params['model']}-{digest[:10]}"


def semantic_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two validated param dicts describe the same experiment."""
    keys = [k for k, f in SCHEMA.items() if f.semantic]
    return json.dumps({k: a.get(k, SCHEMA[k].default) for k in keys}, sort_keys=True, default=str) == \
        json.dumps({k: b.get(k, SCHEMA[k].default) for k in keys}, sort_keys=True, default=str)


#: Names an IPython namespace always has; never parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def collect(namespace: dict[str, Any], before: set[str] | frozenset[str]) -> dict[str, Any]:
    """The parameters a notebook defined: names added to ``namespace`` since ``before``.

    Notebooks take ``_before = set(globals())`` in their import cell, then define parameters
    (the ``parameters`` cell plus whatever papermill injects) and call
    ``params.collect(globals(), _before)``. A mistyped injected name shows up here and is then
    rejected by :func:`validate` (papermill itself only warns).
    """
    import types

    return {k: v for k, v in namespace.items()
            if k not in before and not k.startswith("_") and k not in _IPYTHON_NAMES
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def check_keys(given: dict[str, Any], allowed: dict[str, Any], where: str = "notebook") -> dict[str, Any]:
    """Reject keys of ``given`` not in ``allowed`` (for notebooks with their own parameters).

    Returns:
        ``allowed`` updated with ``given``.
    """
    unknown = [k for k in given if k not in allowed]
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, allowed, n=1)) else "")
                 for k in unknown]
        raise ParamError(f"{where}: unknown parameter(s) {', '.join(hints)}; valid: {sorted(allowed)}")
    return {**allowed, **given}
