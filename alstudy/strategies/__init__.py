"""Active-learning strategies: one registry (:data:`STRATEGIES`) maps names to classes.

Every module in this package registers its strategies with ``@register``; importing the
package imports them all, so a new strategy is one new module and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import STRATEGIES, Option, SelectionContext, Strategy, check_budget, register

__all__ = ["STRATEGIES", "Strategy", "Option", "SelectionContext", "register", "build",
           "available", "check_budget"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def available() -> list[str]:
    """Names of all registered strategies, sorted."""
    return sorted(STRATEGIES)


def build(name: str, **options) -> Strategy:
    """Build a strategy by name with validated options.

    Args:
        name: A registered strategy name (see :func:`available`).
        **options: Strategy options; unknown names or bad values raise ``ValueError``.

    Returns:
        The strategy instance.

    Raises:
        ValueError: Unknown strategy or invalid option (the message lists the valid ones).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; available strategies: {available()}")
    return STRATEGIES[name](**options)
