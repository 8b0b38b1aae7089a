"""Evidence: paired statistics that turn tidy results into verdicts.

The rules live in one place, the docstring of :mod:`alstudy.evidence.stats`.
"""

from .stats import (KINDS, SUMMARY_METRICS, VERDICTS, Comparison, Family, Trend, compare, compare_many,
                    distinct_levels, grid, holm, mde, penalty_matrix, per_cycle, trend)
from .verdicts import judge_run, render_markdown

__all__ = ["KINDS", "SUMMARY_METRICS", "VERDICTS", "Comparison", "Family", "Trend", "compare",
           "compare_many", "distinct_levels", "grid", "holm", "mde", "penalty_matrix", "per_cycle",
           "trend", "judge_run", "render_markdown"]
