"""The batch-split check: short-batch checkpoints and verdicts with and without them."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from alstudy import results
from alstudy.evidence import batch_split_check, short_batch_sizes
from alstudy.evidence.verdicts import sibling_runs


def _naive_short(n: int, b: int, split: str, share: float = 0.25) -> bool:
    if n <= b:
        return False
    if split == "last_partial":
        smallest = n % b or b
    else:  # ceil(n / b) batches, sizes differing by at most one
        smallest = n // math.ceil(n / b)
    return smallest < share * b


@pytest.mark.parametrize("split", ["last_partial", "equal"])
def test_short_batch_sizes_match_closed_form(split):
    for b in (7, 32, 96, 128):
        sizes = list(range(1, 5 * b))
        assert short_batch_sizes(sizes, b, split) == [n for n in sizes if _naive_short(n, b, split)]


def test_short_batch_sizes_paper_protocol():
    sizes = range(20, 221, 20)  # 20 initial + 10 cycles of +20
    assert short_batch_sizes(sizes, 96) == [100, 200]  # last batches of 4 and 8 examples
    assert short_batch_sizes(sizes, 96, "equal") == []


_SIZES = list(range(20, 221, 20))


def _run(root, name, split, *, dip, advantage, seed_count=10, lr=0.001):
    """A synthetic ns_ablation_variants run: NS beats NS-M/NS-D by ``advantage`` everywhere but at
    the short-batch sizes, where NS loses ``dip``."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seed_count):
        base = 0.5 + 0.4 * np.linspace(0, 1, len(_SIZES)) + rng.normal(0, 0.01)
        for strategy in ("NS", "NS-M", "NS-D"):
            for cycle, n in enumerate(_SIZES):
                value = base[cycle] + rng.normal(0, 0.002)
                if strategy == "NS":
                    value += -dip if n in (100, 200) else advantage
                rows.append({"experiment": "ns_ablation_variants", "run_id": name, "dataset": "mnist",
                             "model": "small_cnn", "strategy": strategy, "seed": seed, "cycle": cycle,
                             "n_labeled": n, "metric": "accuracy", "value": value})
    folder = root / "ns_ablation_variants" / name
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=results.COLUMNS).to_csv(folder / "metrics.csv", index=False)
    prm = {"experiment": "ns_ablation_variants", "dataset": "mnist", "model": "small_cnn",
           "seeds": list(range(seed_count)), "batch_size": 96, "batch_split": split, "lr": lr,
           "initial_size": 20, "budget": 20, "cycles": 10}
    (folder / "params.yaml").write_text(yaml.safe_dump(prm))
    return folder


def test_check_flags_a_verdict_that_rests_on_short_batches(tmp_path):
    paper = _run(tmp_path, "paper-split", "last_partial", dip=0.3, advantage=0.02)
    equal = _run(tmp_path, "equal-split", "equal", dip=-0.02, advantage=0.02, seed_count=8)  # NS better everywhere
    _run(tmp_path, "other-lr", "equal", dip=0.0, advantage=0.0, lr=0.01)  # differs in lr: not a sibling
    assert sibling_runs(paper, {"batch_split": "equal"}) == [equal]
    assert sibling_runs(equal, {"batch_split": "last_partial"}) == [paper]

    row = batch_split_check("ns_ablation_variants", paper, write=True).set_index("claim").loc[
        "ns.fig4_left.variants_worse"]
    # the dips at 100 and 200 labels outweigh NS's lead elsewhere on the whole-run AUBC ...
    assert row["verdict"] == "contradicted" and row["diff"] < 0
    # ... without them NS leads, and the sibling run with equal batches agrees with that
    assert row["dropped_sizes"] == [100, 200]
    assert row["dropped_verdict"] == "reproduced" and row["dropped_diff"] > 0
    # both runs judged on their 8 shared seeds: the paper split still contradicts, equal reproduces
    assert row["other_run"] == "equal-split" and row["common_seeds"] == 8
    assert row["common_verdict"] == "contradicted" and row["other_verdict"] == "reproduced"
    assert row["other_n"] == 8 and bool(row["hinges"])
    assert (paper / "batch_split_check.csv").exists()

    row = batch_split_check("ns_ablation_variants", equal, write=False).set_index("claim").loc[
        "ns.fig4_left.variants_worse"]
    assert row["verdict"] == "reproduced"
    assert not isinstance(row["dropped_sizes"], list) and pd.isna(row["dropped_verdict"])  # none short
    assert row["common_verdict"] == "reproduced" and row["other_verdict"] == "contradicted"
    assert row["other_n"] == 8 and bool(row["hinges"])


def test_check_agrees_when_the_split_does_not_matter(tmp_path):
    paper = _run(tmp_path, "paper-split", "last_partial", dip=-0.02, advantage=0.02)
    row = batch_split_check("ns_ablation_variants", paper, write=False).iloc[0]
    assert row["verdict"] == row["dropped_verdict"] == "reproduced"
    assert pd.isna(row["other_verdict"]) and not bool(row["hinges"])


def test_a_sibling_with_fewer_seeds_does_not_flag_a_difference_of_n(tmp_path):
    # the same true effect under both splits; the sibling has only 3 seeds, too few to decide
    run = _run(tmp_path, "equal-split", "equal", dip=-0.004, advantage=0.004)
    _run(tmp_path, "paper-split", "last_partial", dip=-0.004, advantage=0.004, seed_count=3)
    row = batch_split_check("ns_ablation_variants", run, write=False).iloc[0]
    assert row["verdict"] == "reproduced" and row["common_seeds"] == 3
    assert row["common_verdict"] == row["other_verdict"] and not bool(row["hinges"])
