"""The strategy contract, validated options and the single name -> class registry.

A strategy turns ``(model, data, pool, budget, generator)`` into the training-set indices to
label next. Scoring strategies implement :meth:`Strategy.score` (one number per candidate,
higher = more informative) and inherit ranking by :func:`alstudy.selection.topk`; others
override :meth:`Strategy.select`. Candidates with non-finite scores always follow
:func:`alstudy.selection.finite_first` (a warning, ranked last, never picked while a finite
candidate remains).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from ..selection import topk

__all__ = ["Option", "Strategy", "SelectionContext", "STRATEGIES", "register", "choice",
           "integer", "number", "boolean", "candidates_option", "check_budget"]


@dataclass(frozen=True)
class Option:
    """One strategy option: its default, a validity check and the allowed range in words."""

    default: Any
    check: Callable[[Any], bool]
    allowed: str
    help: str = ""


def choice(default: str, choices: tuple[str, ...], help: str = "") -> Option:
    """An option taking one of ``choices``."""
    return Option(default, lambda v: v in choices, f"one of {list(choices)}", help)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(default: int | None, low: int | None = None, high: int | None = None,
            allow_none: bool = False, help: str = "") -> Option:
    """An integer option in ``[low, high]`` (``None`` allowed if ``allow_none``)."""
    def check(v: Any) -> bool:
        if v is None:
            return allow_none
        return _is_int(v) and (low is None or v >= low) and (high is None or v <= high)
    rng = f"integer in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
    return Option(default, check, rng + (" or null" if allow_none else ""), help)


def number(default: float, low: float | None = None, high: float | None = None,
           low_open: bool = False, help: str = "") -> Option:
    """A real option in ``[low, high]`` (or ``(low, high]`` when ``low_open``)."""
    def check(v: Any) -> bool:
        if not (isinstance(v, (int, float)) and not isinstance(v, bool)) or not math.isfinite(v):
            return False
        above = low is None or (v > low if low_open else v >= low)
        return above and (high is None or v <= high)
    lo = "-inf" if low is None else low
    rng = f"number in {'(' if low_open else '['}{lo}, {high if high is not None else 'inf'}]"
    return Option(default, check, rng, help)


def boolean(default: bool, help: str = "") -> Option:
    """A true/false option."""
    return Option(default, lambda v: isinstance(v, bool), "true or false", help)


def candidates_option(default: int | str | None = None) -> Option:
    """Size of the random unlabeled subset scored per cycle: an integer >= 1, ``"all"`` or
    ``None`` (= the loop's ``candidates`` setting)."""
    return Option(default, lambda v: v is None or v == "all" or (_is_int(v) and v >= 1),
                  "integer >= 1, 'all' or null (use the run's candidates setting)",
                  "random unlabeled subset scored per cycle")


@dataclass
class SelectionContext:
    """What a strategy may need beyond the model: how to train more models, where, and when.

    Attributes:
        train_config: The run's :class:`alstudy.train.TrainConfig`.
        build_model: Returns a freshly initialised task model.
        device: Device of the run.
        cycle: Current AL cycle (0-based).
        seed: The run's seed.
    """

    train_config: Any
    build_model: Callable[[], torch.nn.Module]
    device: torch.device
    cycle: int = 0
    seed: int = 0


STRATEGIES: dict[str, type["Strategy"]] = {}


def register(cls: type["Strategy"]) -> type["Strategy"]:
    """Class decorator adding a strategy to :data:`STRATEGIES` under ``cls.name``."""
    if not cls.name or cls.name in STRATEGIES:
        raise ValueError(f"strategy name {cls.name!r} is empty or registered twice")
    STRATEGIES[cls.name] = cls
    return cls


class Strategy:
    """Base class: validated options, candidate sampling and score -> top-k ranking.

    Subclasses set ``name``, ``tasks``, ``options`` (merged with the base options) and,
    when the authors' code differs from the paper, ``variants`` (``{"official": {...}}``).
    """

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")
    options: ClassVar[dict[str, Option]] = {}
    variants: ClassVar[dict[str, dict[str, Any]]] = {}
    base_options: ClassVar[dict[str, Option]] = {"candidates": candidates_option()}

    def __init__(self, **opts: Any):
        spec = self.option_spec()
        unknown = [k for k in opts if k not in spec]
        if unknown:
            hints = {k: difflib.get_close_matches(k, spec, n=1) for k in unknown}
            hint = "; ".join(f"{k!r} (did you mean {h[0]!r}?)" for k, h in hints.items() if h)
            raise ValueError(f"strategy {self.name!r}: unknown option(s) {unknown}"
                             f"{'; ' + hint if hint else ''}; valid options: {sorted(spec)}")
        values = {k: o.default for k, o in spec.items()}
        variant = opts.get("variant", values.get("variant"))
        if "variant" in spec:
            if not spec["variant"].check(variant):
                raise ValueError(f"strategy {self.name!r}: option 'variant' = {variant!r} is "
                                 f"invalid; allowed: {spec['variant'].allowed}")
            values.update(self.variants.get(variant, {}))
        values.update(opts)
        for key, value in values.items():
            if not spec[key].check(value):
                raise ValueError(f"strategy {self.name!r}: option {key!r} = {value!r} is invalid;"
                                 f" allowed: {spec[key].allowed}")
        self.opts: dict[str, Any] = values
        self.validate()

    @classmethod
    def option_spec(cls) -> dict[str, Option]:
        """All options of this strategy (base options first), including ``variant`` if any."""
        spec = dict(cls.base_options)
        spec.update(cls.options)
        if cls.variants:
            spec["variant"] = choice("paper", ("paper", *cls.variants), "paper or authors' code")
        return spec

    def validate(self) -> None:
        """Cross-option checks (override); raise ValueError naming the options."""

    @property
    def label(self) -> str:
        """How warnings name this strategy, e.g. ``"strategy 'entropy'"``."""
        return f"strategy {self.name!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.opts.items())})"

    # -------------------------------------------------------------- selection

    def check_task(self, task: str) -> None:
        """Raise a clear error when the dataset's task is not supported."""
        if task not in self.tasks:
            raise ValueError(f"strategy {self.name!r} supports {list(self.tasks)} tasks, "
                             f"not {task!r}")

    def candidate_indices(self, pool, generator: torch.Generator) -> torch.Tensor:
        """Unlabeled indices to score this cycle (the strategy's ``candidates`` or the pool's)."""
        size = self.opts.get("candidates")
        if size == "all":
            return pool.unlabeled
        return pool.candidates(size, generator)

    def select(self, model: torch.nn.Module, data, pool, budget: int,
               generator: torch.Generator, context: SelectionContext | None = None) -> torch.Tensor:
        """Return ``budget`` distinct unlabeled training indices to label next.

        Args:
            model: The trained task model (``g ∘ f`` contract), in eval mode.
            data: The :class:`alstudy.data.Dataset`.
            pool: The :class:`alstudy.pool.Pool`.
            budget: Number of examples to select.
            generator: Seeded CPU generator (all randomness comes from it).
            context: Training facilities for strategies that train extra models.

        Returns:
            LongTensor ``[budget]`` of training-set indices.
        """
        self.check_task(data.task)
        cands = self.candidate_indices(pool, generator)  # [M]
        check_budget(budget, cands.numel())
        model.eval()
        scores = self.score(model, data.x_train[cands], generator=generator)  # [M]
        return cands[topk(scores, budget, label=self.label)]

    def score(self, model: torch.nn.Module, x: torch.Tensor, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Informativeness of each input ``[M]`` (higher = pick first)."""
        raise NotImplementedError(f"strategy {self.name!r} does not define a score")

    def training_hook(self, model: torch.nn.Module, data):
        """Auxiliary module and loss to train jointly with the model (default: none)."""
        return None


def check_budget(budget: int, n_candidates: int) -> None:
    """Raise a clear error when ``budget`` cannot be met from ``n_candidates``."""
    if not (isinstance(budget, int) and budget >= 0):
        raise ValueError(f"budget must be an integer >= 0, got {budget!r}")
    if budget > n_candidates:
        raise ValueError(f"budget {budget} exceeds the {n_candidates} available candidates")
