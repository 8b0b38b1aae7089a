"""The claim registry: every claim of the NoiseStability and SAAL papers, validated.

The registry is ``claims.yaml`` next to this module (shipped as package data); its header
documents the entry schema, which :func:`parse_claim` enforces. Each entry names the quote and
place in the paper, the kind of claim, what the evidence engine compares, the margin where one
is needed, and the notebook and preset that test it, or the reason it cannot run here.

Typical use::

    from alstudy.evidence import claims
    claims.claim("ns.fig1.mnist.best_or_comparable").compare.b
    [c.id for c in claims.claims_for("ns_ablation_k")]
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import yaml

__all__ = [
    "BETTER", "Between", "Claim", "ClaimError", "Compare", "Gate", "KINDS", "METRICS", "PAPERS",
    "Threshold", "claim", "claims_for", "load_claims", "parse_claim", "parse_claims",
]

PAPERS = ("noise_stability", "saal")
KINDS = ("superiority", "non_inferiority", "equivalence", "trend", "correlation",
         "theorem_check", "cost_ratio", "summary")
METRICS = ("aubc", "final", "best", "cycle")
DIRECTIONS = ("increasing", "decreasing")
OPS = ("lt", "le", "gt", "ge", "between", "approx")
BETTER = MappingProxyType({"accuracy": "higher", "miou": "higher", "map50": "higher",
                           "pixel_accuracy": "higher", "mae": "lower"})
"""Default direction of a win for the per-cycle metrics whose meaning is fixed."""

PAIRED_KINDS = ("superiority", "non_inferiority", "equivalence")
MARGIN_KINDS = ("non_inferiority", "equivalence")
QUANTITY_KINDS = ("correlation", "theorem_check", "cost_ratio")

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_NAME = re.compile(r"^[a-z0-9_]+$")
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_]+$")

_TOP_KEYS = ("id", "paper", "where", "quote", "kind", "compare", "margin", "margin_note",
             "margin_relative_to", "notebook", "preset", "batch", "not_run", "extension",
             "diagnostic", "setting", "note", "gate", "covered_by")
_REQUIRED = ("id", "paper", "where", "quote", "kind", "notebook", "preset", "not_run",
             "extension", "setting")
_COMPARE_KEYS = ("a", "b", "column", "metric", "summary_metric", "better", "cycles", "x",
                 "levels", "direction", "quantity", "threshold", "filter", "between")
_THRESHOLD_KEYS = ("op", "value", "tol", "share", "statistic", "text")


class ClaimError(ValueError):
    """A registry entry that breaks the schema; the message is one line naming id and key."""


@dataclass(frozen=True)
class Threshold:
    """What a named quantity must satisfy.

    Attributes:
        op: ``lt | le | gt | ge | between | approx``.
        value: The bound; a ``(lo, hi)`` pair for ``between``.
        tol: Tolerance of ``approx`` (``|q - value| <= tol``).
        share: Fraction of a family that must satisfy it (1 = every member).
        statistic: ``mean`` (t rule) or ``median`` (sign test; ``lt | le | gt | ge`` only) of
            the quantity's values.
        text: The condition in the paper's terms.
    """

    op: str
    value: float | tuple[float, float]
    tol: float | None = None
    share: float = 1.0
    statistic: str = "mean"
    text: str | None = None

    def __post_init__(self) -> None:
        if self.statistic not in ("mean", "median"):
            raise ValueError(f"Threshold.statistic: {self.statistic!r}; allowed: mean, median")
        if self.statistic == "median" and self.op not in ("lt", "le", "gt", "ge"):
            raise ValueError(f"Threshold.statistic: median with op {self.op!r}; "
                             "allowed ops for a median: lt, le, gt, ge")

    def holds(self, q: float) -> bool:
        """Whether the number ``q`` satisfies the threshold (the engine adds uncertainty)."""
        v = self.value
        if self.op == "between":
            return v[0] <= q <= v[1]
        if self.op == "approx":
            return abs(q - v) <= self.tol
        return {"lt": q < v, "le": q <= v, "gt": q > v, "ge": q >= v}[self.op]


@dataclass(frozen=True)
class Between:
    """An interaction: the a-vs-b comparison is made on the difference between two groups.

    Attributes:
        column: The run parameter that defines the groups (e.g. ``optimizer``).
        a: The group where the claim says the a-vs-b difference is larger.
        b: The other group.
    """

    column: str
    a: Any
    b: Any


@dataclass(frozen=True)
class Gate:
    """A precondition: a verdict is drawn only when ``quantity`` meets ``threshold``."""

    quantity: str
    threshold: Threshold


@dataclass(frozen=True)
class Compare:
    """What the evidence engine compares for one claim (see the YAML header for each key).

    Attributes:
        a: Label of the tested arm (strategy label, or a value of ``column``).
        b: Labels it is compared with; more than one is a Holm-corrected family.
        column: ``strategy`` or the run parameter that distinguishes the arms.
        metric: ``aubc | final | best | cycle``.
        summary_metric: The per-cycle metric of the tidy results.
        better: ``higher | lower``: the direction of ``summary_metric`` that is a win for a.
        cycles: ``"all"``, ``{"first_k": k}``, ``{"after_k": k}`` or a tuple of cycles.
        x: Trend axis (``cycle`` or a parameter).
        levels: Trend along a parameter: arm label -> value of ``x``.
        direction: ``increasing | decreasing``.
        quantity: The named number of a correlation / theorem check / cost ratio.
        threshold: What ``quantity`` must satisfy.
        filter: Rows kept before comparing: column -> value or tuple of values.
        between: Interaction groups, or None.
    """

    a: Any = None
    b: tuple = ()
    column: str = "strategy"
    metric: str | None = None
    summary_metric: str | None = None
    better: str | None = None
    cycles: Any = None
    x: str | None = None
    levels: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    direction: str | None = None
    quantity: str | None = None
    threshold: Threshold | None = None
    filter: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    between: Between | None = None

    @property
    def family(self) -> bool:
        """True when a is compared with several arms (Holm correction applies)."""
        return len(self.b) > 1

    def cycle_indices(self, available: Sequence[int]) -> list[int]:
        """Resolve ``cycles`` against the cycles present in a run.

        Cycle 0 (the model of the initial labels, shared by every arm) is never compared.

        Args:
            available: Cycle numbers present in the results.

        Returns:
            The sorted cycles the claim compares; all cycles >= 1 when ``cycles`` is unset.
        """
        have = sorted({int(c) for c in available if int(c) >= 1})
        spec = self.cycles
        if spec is None or spec == "all":
            return have
        if isinstance(spec, Mapping):
            if "first_k" in spec:
                return [c for c in have if c <= spec["first_k"]]
            return [c for c in have if c > spec["after_k"]]
        return [c for c in have if c in set(spec)]


@dataclass(frozen=True)
class Claim:
    """One claim of one paper (see the header of ``claims.yaml`` for every field)."""

    id: str
    paper: str
    where: str
    quote: str
    kind: str
    setting: str
    extension: bool
    compare: Compare | None = None
    margin: float | None = None
    margin_note: str | None = None
    margin_relative_to: str | None = None
    notebook: str | None = None
    preset: str | None = None
    batch: str | None = None
    not_run: str | None = None
    diagnostic: bool = False
    note: str | None = None
    gate: Gate | None = None
    covered_by: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        """True when a notebook and preset here test the claim (not a summary, no not_run)."""
        return self.not_run is None and self.kind != "summary"

    @property
    def preset_path(self) -> Path | None:
        """``params/<notebook>.<preset>.yaml`` relative to the repository root, or None."""
        if self.notebook is None or self.preset is None:
            return None
        return Path("params") / f"{self.notebook}.{self.preset}.yaml"

    @property
    def batch_path(self) -> Path | None:
        """``params/batch/<batch>`` relative to the repository root, or None."""
        return None if self.batch is None else Path("params") / "batch" / self.batch


# ---- validation -----------------------------------------------------------------------------


def _fail(cid: str, key: str, value: Any, allowed: str) -> None:
    raise ClaimError(f"claim {cid}: {key} = {value!r} is not allowed; allowed: {allowed}")


def _choice(cid: str, key: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        _fail(cid, key, value, " | ".join(choices))
    return value


def _text(cid: str, key: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        _fail(cid, key, value, "a non-empty string" + (" or null" if optional else ""))
    return value.strip()


def _number(cid: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(cid, key, value, "a number")
    return float(value)


def _label(cid: str, key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        _fail(cid, key, value, "a label (string or number)")
    return value


def _labels(cid: str, key: str, value: Any) -> tuple:
    items = value if isinstance(value, list) else [value]
    if not items:
        _fail(cid, key, value, "a label or a non-empty list of labels")
    out = tuple(_label(cid, key, v) for v in items)
    if len(set(out)) != len(out):
        _fail(cid, key, value, "distinct labels")
    return out


def _unknown(cid: str, where: str, entry: Mapping, allowed: Sequence[str]) -> None:
    for key in entry:
        if key not in allowed:
            _fail(cid, f"{where}{key}", "(unknown key)", ", ".join(allowed))


def _threshold(cid: str, key: str, raw: Any) -> Threshold:
    if not isinstance(raw, Mapping):
        _fail(cid, key, raw, "a mapping {op, value, tol, share, text}")
    _unknown(cid, f"{key}.", raw, _THRESHOLD_KEYS)
    op = _choice(cid, f"{key}.op", raw.get("op"), OPS)
    value = raw.get("value")
    if op == "between":
        if not (isinstance(value, list) and len(value) == 2):
            _fail(cid, f"{key}.value", value, "[lo, hi] for op between")
        lo, hi = (_number(cid, f"{key}.value", v) for v in value)
        if lo > hi:
            _fail(cid, f"{key}.value", value, "[lo, hi] with lo <= hi")
        value = (lo, hi)
    else:
        value = _number(cid, f"{key}.value", value)
    tol = raw.get("tol")
    if op == "approx":
        tol = _number(cid, f"{key}.tol", tol)
        if tol <= 0:
            _fail(cid, f"{key}.tol", tol, "a positive number")
    elif tol is not None:
        _fail(cid, f"{key}.tol", tol, "only with op approx")
    share = raw.get("share", 1.0)
    share = _number(cid, f"{key}.share", share)
    if not 0 < share <= 1:
        _fail(cid, f"{key}.share", share, "a fraction in (0, 1]")
    statistic = _choice(cid, f"{key}.statistic", raw.get("statistic", "mean"), ("mean", "median"))
    if statistic == "median" and op in ("between", "approx"):
        _fail(cid, f"{key}.statistic", statistic, "median only with op lt, le, gt or ge")
    return Threshold(op=op, value=value, tol=tol, share=share, statistic=statistic,
                     text=_text(cid, f"{key}.text", raw.get("text"), optional=True))


def _cycles(cid: str, raw: Any) -> Any:
    key = "compare.cycles"
    allowed = "all | {first_k: k} | {after_k: k} | a list of cycles >= 1"
    if raw == "all":
        return "all"
    if isinstance(raw, Mapping):
        if len(raw) != 1 or next(iter(raw)) not in ("first_k", "after_k"):
            _fail(cid, key, raw, allowed)
        (name, k), = raw.items()
        low = 1 if name == "first_k" else 0
        if isinstance(k, bool) or not isinstance(k, int) or k < low:
            _fail(cid, f"{key}.{name}", k, f"an integer >= {low}")
        return MappingProxyType({name: k})
    if isinstance(raw, list) and raw and all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in raw):
        return tuple(sorted(set(raw)))
    _fail(cid, key, raw, allowed)


def _mapping(cid: str, key: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping) or not raw:
        _fail(cid, key, raw, "a non-empty mapping")
    out = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not k:
            _fail(cid, key, k, "string keys")
        out[k] = tuple(_labels(cid, f"{key}.{k}", v)) if isinstance(v, list) else _label(
            cid, f"{key}.{k}", v)
    return MappingProxyType(out)


def _compare(cid: str, kind: str, raw: Any, diagnostic: bool) -> Compare:
    if not isinstance(raw, Mapping):
        _fail(cid, "compare", raw, "a mapping (see the schema in claims.yaml)")
    _unknown(cid, "compare.", raw, _COMPARE_KEYS)
    kw: dict[str, Any] = {}
    if "a" in raw:
        kw["a"] = _label(cid, "compare.a", raw["a"])
    if "b" in raw:
        kw["b"] = _labels(cid, "compare.b", raw["b"])
        if kw.get("a") in kw["b"]:
            _fail(cid, "compare.b", raw["b"], "labels other than compare.a")
    if "column" in raw:
        kw["column"] = _text(cid, "compare.column", raw["column"])
    if "metric" in raw:
        kw["metric"] = _choice(cid, "compare.metric", raw["metric"], METRICS)
    if "summary_metric" in raw:
        sm = raw["summary_metric"]
        if not isinstance(sm, str) or not _METRIC_NAME.match(sm):
            _fail(cid, "compare.summary_metric", sm, "a metric name of the tidy results")
        kw["summary_metric"] = sm
    if "better" in raw:
        kw["better"] = _choice(cid, "compare.better", raw["better"], ("higher", "lower"))
    if "cycles" in raw:
        kw["cycles"] = _cycles(cid, raw["cycles"])
    if "x" in raw:
        kw["x"] = _text(cid, "compare.x", raw["x"])
    if "levels" in raw:
        levels = _mapping(cid, "compare.levels", raw["levels"])
        for k, v in levels.items():
            _number(cid, f"compare.levels.{k}", v)
        kw["levels"] = MappingProxyType({k: float(v) for k, v in levels.items()})
    if "direction" in raw:
        kw["direction"] = _choice(cid, "compare.direction", raw["direction"], DIRECTIONS)
    if "quantity" in raw:
        kw["quantity"] = _text(cid, "compare.quantity", raw["quantity"])
    if "threshold" in raw:
        kw["threshold"] = _threshold(cid, "compare.threshold", raw["threshold"])
    if "filter" in raw:
        kw["filter"] = _mapping(cid, "compare.filter", raw["filter"])
    if "between" in raw:
        bt = raw["between"]
        if not isinstance(bt, Mapping) or set(bt) != {"column", "a", "b"}:
            _fail(cid, "compare.between", bt, "a mapping {column, a, b}")
        if bt["a"] == bt["b"]:
            _fail(cid, "compare.between", bt, "two different groups a and b")
        kw["between"] = Between(column=_text(cid, "compare.between.column", bt["column"]),
                                a=_label(cid, "compare.between.a", bt["a"]),
                                b=_label(cid, "compare.between.b", bt["b"]))

    def need(*keys: str) -> None:
        for k in keys:
            if k not in raw:
                _fail(cid, f"compare.{k}", None, f"required for kind {kind}")

    def forbid(*keys: str) -> None:
        for k in keys:
            if k in raw:
                _fail(cid, f"compare.{k}", raw[k], f"not used by kind {kind}")

    if kind in PAIRED_KINDS:
        need("a", "b", "metric", "summary_metric")
        forbid("x", "levels", "direction", "quantity", "threshold")
    elif kind == "trend":
        need("x", "direction")
        forbid("b", "threshold")
        if "summary_metric" not in raw and "quantity" not in raw:
            _fail(cid, "compare.summary_metric", None,
                  "required for kind trend (or compare.quantity)")
        if "summary_metric" in raw:
            need("metric")
        if kw["x"] == "cycle":
            if kw["metric"] != "cycle":
                _fail(cid, "compare.metric", kw["metric"], "cycle for a trend along x: cycle")
            if "levels" in raw:
                _fail(cid, "compare.levels", raw["levels"], "not used along x: cycle")
            if "a" not in raw:
                _fail(cid, "compare.a", None, "required for a trend along x: cycle")
        elif "levels" not in raw and "quantity" not in raw:
            _fail(cid, "compare.levels", None,
                  f"required for a trend along x: {kw['x']} (or compare.quantity)")
        elif "levels" in raw and len(kw["levels"]) < 2:
            _fail(cid, "compare.levels", raw["levels"], "at least two levels")
    else:  # correlation, theorem_check, cost_ratio
        need("quantity")
        if "threshold" not in raw and not diagnostic:
            _fail(cid, "compare.threshold", None,
                  f"required for kind {kind} (only a diagnostic may omit it)")
        forbid("x", "levels", "direction")

    metric = kw.get("metric")
    if metric == "cycle" and "cycles" not in raw and kind != "trend":
        _fail(cid, "compare.cycles", None, "required with metric: cycle")
    if metric not in (None, "cycle") and "cycles" in raw:
        _fail(cid, "compare.cycles", raw["cycles"], "only with metric: cycle")
    if kind in PAIRED_KINDS:
        sm = kw["summary_metric"]
        if "better" not in kw:
            if sm not in BETTER:
                _fail(cid, "compare.better", None,
                      f"required for summary_metric {sm!r} (defaults exist for "
                      f"{', '.join(BETTER)})")
            kw["better"] = BETTER[sm]
    return Compare(**kw)


def parse_claim(entry: Mapping[str, Any]) -> Claim:
    """Validate one registry entry and build its :class:`Claim`.

    Args:
        entry: One mapping of the YAML list.

    Returns:
        The frozen claim.

    Raises:
        ClaimError: One line naming the claim id, the bad key and value, and what is allowed.
    """
    if not isinstance(entry, Mapping):
        raise ClaimError(f"claim entry {entry!r} is not a mapping of keys; allowed keys: "
                         f"{', '.join(_TOP_KEYS)}")
    cid = entry.get("id")
    if not isinstance(cid, str) or not _ID.match(cid):
        raise ClaimError(f"claim {cid!r}: id = {cid!r} is not allowed; allowed: dotted lowercase "
                         "words, e.g. ns.fig1.mnist.best_or_comparable")
    _unknown(cid, "", entry, _TOP_KEYS)
    for key in _REQUIRED:
        if key not in entry:
            _fail(cid, key, None, "a value (the key is required)")

    paper = _choice(cid, "paper", entry["paper"], PAPERS)
    kind = _choice(cid, "kind", entry["kind"], KINDS)
    where = _text(cid, "where", entry["where"])
    quote = _text(cid, "quote", entry["quote"])
    setting = _text(cid, "setting", entry["setting"])
    note = _text(cid, "note", entry.get("note"), optional=True)
    for key in ("extension", "diagnostic"):
        if key in entry and not isinstance(entry[key], bool):
            _fail(cid, key, entry[key], "true | false")
    extension = entry["extension"]
    diagnostic = entry.get("diagnostic", False)
    if diagnostic and not extension:
        _fail(cid, "diagnostic", diagnostic, "true only with extension: true")

    not_run = _text(cid, "not_run", entry["not_run"], optional=True)
    notebook, preset = entry["notebook"], entry["preset"]
    for key, value in (("notebook", notebook), ("preset", preset)):
        if value is not None and (not isinstance(value, str) or not _NAME.match(value)):
            _fail(cid, key, value, "a lowercase file stem ([a-z0-9_]+) or null")
    batch = entry.get("batch")
    if batch is not None and (not isinstance(batch, str) or not re.match(r"^[\w.-]+\.yaml$", batch)):
        _fail(cid, "batch", batch, "a file name under params/batch/ ending in .yaml, or null")

    if kind == "summary":
        for key in ("compare", "margin", "margin_note", "margin_relative_to", "gate", "batch"):
            if entry.get(key) is not None:
                _fail(cid, key, entry[key], "nothing for kind summary (it is made of covered_by)")
        for key, value in (("notebook", notebook), ("preset", preset), ("not_run", not_run)):
            if value is not None:
                _fail(cid, key, value, "null for kind summary")
        cov = entry.get("covered_by")
        if not isinstance(cov, list) or not cov or not all(isinstance(c, str) for c in cov):
            _fail(cid, "covered_by", cov, "a non-empty list of claim ids for kind summary")
        if len(set(cov)) != len(cov) or cid in cov:
            _fail(cid, "covered_by", cov, "distinct ids other than the claim's own")
        return Claim(id=cid, paper=paper, where=where, quote=quote, kind=kind, setting=setting,
                     extension=extension, diagnostic=diagnostic, note=note,
                     covered_by=tuple(cov))

    if entry.get("covered_by") is not None:
        _fail(cid, "covered_by", entry["covered_by"], "only for kind summary")
    if "compare" not in entry:
        _fail(cid, "compare", None, f"a mapping (required for kind {kind})")
    compare = _compare(cid, kind, entry["compare"], diagnostic)

    margin = entry.get("margin")
    margin_note = entry.get("margin_note")
    relative = entry.get("margin_relative_to")
    if kind in MARGIN_KINDS:
        if margin is None:
            _fail(cid, "margin", None, f"a positive number (required for kind {kind})")
        margin = _number(cid, "margin", margin)
        if margin <= 0:
            _fail(cid, "margin", margin, "a positive number")
        margin_note = _text(cid, "margin_note", margin_note)
        if relative is not None:
            arms = (compare.a, *compare.b)
            if relative not in arms:
                _fail(cid, "margin_relative_to", relative, " | ".join(map(str, arms)))
            if margin >= 1:
                _fail(cid, "margin", margin, "a fraction below 1 with margin_relative_to")
    else:
        for key, value in (("margin", margin), ("margin_note", margin_note),
                           ("margin_relative_to", relative)):
            if value is not None:
                _fail(cid, key, value, "only for kinds non_inferiority | equivalence")

    gate = entry.get("gate")
    if gate is not None:
        if not isinstance(gate, Mapping) or set(gate) != {"quantity", "threshold"}:
            _fail(cid, "gate", gate, "a mapping {quantity, threshold}")
        gate = Gate(quantity=_text(cid, "gate.quantity", gate["quantity"]),
                    threshold=_threshold(cid, "gate.threshold", gate["threshold"]))

    if not_run is None:
        if notebook is None:
            _fail(cid, "notebook", None, "a notebook name (a claim without not_run must run)")
        if preset is None:
            _fail(cid, "preset", None, "a preset name (a claim without not_run must run)")

    return Claim(id=cid, paper=paper, where=where, quote=quote, kind=kind, setting=setting,
                 extension=extension, compare=compare, margin=margin, margin_note=margin_note,
                 margin_relative_to=relative, notebook=notebook, preset=preset, batch=batch,
                 not_run=not_run, diagnostic=diagnostic, note=note, gate=gate)


def parse_claims(entries: Any) -> list[Claim]:
    """Validate a whole registry: every entry, unique ids, and summaries' references.

    Args:
        entries: The YAML list.

    Returns:
        The claims in registry order.

    Raises:
        ClaimError: The first problem found, in one line.
    """
    if not isinstance(entries, list) or not entries:
        raise ClaimError(f"claim registry must be a non-empty list of entries, got "
                         f"{type(entries).__name__}")
    out: list[Claim] = []
    seen: set[str] = set()
    for entry in entries:
        c = parse_claim(entry)
        if c.id in seen:
            _fail(c.id, "id", c.id, "an id not used by an earlier entry")
        seen.add(c.id)
        out.append(c)
    for c in out:
        for ref in c.covered_by:
            if ref not in seen:
                _fail(c.id, "covered_by", ref, "ids of claims in the registry")
    return out


@functools.lru_cache(maxsize=None)
def _default_claims() -> tuple[Claim, ...]:
    text = resources.files("alstudy").joinpath("evidence", "claims.yaml").read_text(
        encoding="utf-8")
    return tuple(parse_claims(yaml.safe_load(text)))


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """Load and validate the claim registry.

    Args:
        path: A registry file; None reads the ``claims.yaml`` shipped with the package.

    Returns:
        Every claim, in registry order (grouped by paper, then section).

    Raises:
        ClaimError: A malformed entry, in one line naming the claim id and key.
    """
    if path is None:
        return list(_default_claims())
    return parse_claims(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def claim(claim_id: str) -> Claim:
    """The registry's claim with this id.

    Raises:
        KeyError: Unknown id, naming the closest ids.
    """
    for c in _default_claims():
        if c.id == claim_id:
            return c
    close = difflib.get_close_matches(claim_id, [c.id for c in _default_claims()], n=3)
    raise KeyError(f"unknown claim id {claim_id!r}; closest: {', '.join(close) or 'none'}")


def claims_for(notebook: str) -> list[Claim]:
    """Every claim whose ``notebook`` is this notebook (runnable or not), in registry order."""
    return [c for c in _default_claims() if c.notebook == notebook]
