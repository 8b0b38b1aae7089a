"""Evidence: paired statistics that turn tidy results into verdicts, the claim registry, verdict
records and the README's generated reproduction section.

The rules live in one place, the docstring of :mod:`alstudy.evidence.stats`.
"""

from .stats import (KINDS, SUMMARY_METRICS, VERDICTS, Comparison, Family, Trend, compare, compare_many,
                    distinct_levels, grid, holm, holm_family, mde, median_test, penalty_matrix,
                    per_cycle, sign_test_mde, trend)
from .robustness import batch_split_check, short_batch_sizes
from .verdicts import Verdict, judge, judge_run, paired_table, render_markdown

__all__ = ["KINDS", "SUMMARY_METRICS", "VERDICTS", "Comparison", "Family", "Trend", "compare",
           "compare_many", "distinct_levels", "grid", "holm", "holm_family", "mde", "median_test",
           "penalty_matrix", "per_cycle", "sign_test_mde", "trend", "batch_split_check", "short_batch_sizes", "Verdict", "judge", "judge_run", "paired_table", "render_markdown"]
