"""SAAL experiment notebooks: presets, the Table 1 summary, cycle metrics and report helpers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from alstudy import cycle_metrics, loop, notebooks, params
from alstudy.pool import Pool
from alstudy.reports import saal as saal_report
from alstudy.strategies.saal import saal_scores

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["saal_table1", "saal_rho", "saal_perturbed_loss", "saal_bound_over_rounds", "saal_timing",
         "saal_paper_vs_official"]


# ----------------------------------------------------------------------------- notebooks and presets


@pytest.mark.parametrize("name", NAMES)
def test_parameter_cell_keys_are_schema_keys(name):
    defaults = notebooks.parameters(ROOT / "notebooks" / f"{name}.ipynb")
    assert set(defaults) <= set(params.SCHEMA), sorted(set(defaults) - set(params.SCHEMA))
    assert defaults["experiment"] == name
    params.validate(defaults)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
@pytest.mark.parametrize("name", NAMES)
def test_presets_validate_over_notebook_defaults(name, preset):
    defaults = notebooks.parameters(ROOT / "notebooks" / f"{name}.ipynb")
    given = yaml.safe_load((ROOT / "params" / f"{name}.{preset}.yaml").read_text())
    p = params.validate({**defaults, **given})
    if preset == "cpu":
        assert p["threads"] == 1


def test_batch_files_expand():
    from alstudy import batch

    for path in sorted((ROOT / "params" / "batch").glob("saal_*.yaml")):
        spec = batch.load_spec(path, results_dir="/nonexistent-results")
        units = batch.expand(spec)
        assert units, path
        assert all(u.params["experiment"] == spec.experiment for u in units)


# ----------------------------------------------------------------------------- Table 1 summary


def _tidy(rows):
    cols = ["experiment", "run_id", "dataset", "model", "strategy", "seed", "cycle", "n_labeled",
            "metric", "value"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


def test_table1_final_best_aubc_against_hand_computation():
    # accuracy per (optimizer, strategy, seed) at n_labeled = 20, 30, 50 (uneven steps on purpose)
    curves = {("adam", "saal", 0): [0.5, 0.8, 0.7], ("adam", "saal", 1): [0.4, 0.6, 0.9],
              ("adam", "random", 0): [0.5, 0.55, 0.6], ("adam", "random", 1): [0.45, 0.5, 0.65],
              ("sam", "saal", 0): [0.6, 0.7, 0.75], ("sam", "saal", 1): [0.5, 0.9, 0.8]}
    ns = [20, 30, 50]
    rows = []
    for (opt, strat, seed), acc in curves.items():
        for cycle, (n, a) in enumerate(zip(ns, acc)):
            rows.append((("t1", f"run-{opt}", "fashion_mnist", "small_cnn", strat, seed, cycle, n,
                          "accuracy", a), opt))
            rows.append((("t1", f"run-{opt}", "fashion_mnist", "small_cnn", strat, seed, cycle, n,
                          "train_seconds", 99.0), opt))
    frame = _tidy([r for r, _ in rows])
    frame["optimizer"] = [o for _, o in rows]
    table = saal_report.table1_from_frame(frame).set_index(["optimizer", "strategy"])

    def area(acc):  # trapezoid by hand, normalised by the label range
        total = 0.0
        for i in range(len(ns) - 1):
            total += (acc[i] + acc[i + 1]) / 2 * (ns[i + 1] - ns[i])
        return total / (ns[-1] - ns[0])

    for (opt, strat) in {(o, s) for o, s, _ in curves}:
        per_seed = [curves[(opt, strat, s)] for s in (0, 1)]
        finals = [c[-1] for c in per_seed]
        bests = [max(c) for c in per_seed]
        areas = [area(c) for c in per_seed]
        row = table.loc[(opt, strat)]
        assert row["seeds"] == 2
        assert row["final_mean"] == pytest.approx(sum(finals) / 2)
        assert row["best_mean"] == pytest.approx(sum(bests) / 2)
        assert row["aubc_mean"] == pytest.approx(sum(areas) / 2)
        sd = abs(finals[0] - finals[1]) / np.sqrt(2)  # sample std of two values
        assert row["final_std"] == pytest.approx(sd)
    # best-over-rounds differs from the final round where a run peaked early
    assert table.loc[("adam", "saal"), "best_mean"] == pytest.approx((0.8 + 0.9) / 2)
    assert table.loc[("adam", "saal"), "final_mean"] == pytest.approx((0.7 + 0.9) / 2)
    # rank within the (dataset, optimizer) block
    assert table.loc[("adam", "saal"), "rank_best"] == 1
    assert table.loc[("adam", "random"), "rank_best"] == 2
    assert table.loc[("sam", "saal"), "rank_best"] == 1


def test_table1_requires_grouping_columns():
    frame = _tidy([("t1", "r", "d", "m", "saal", 0, 0, 20, "accuracy", 0.5)])
    with pytest.raises(ValueError, match="optimizer"):
        saal_report.table1_from_frame(frame)


# ----------------------------------------------------------------------------- scorers


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.features(x))


def _naive_perturbed(model, x, y, rho):
    """ℓ(x_i, y_i; θ + ρ g_i/‖g_i‖) one sample at a time, by explicit parameter edits."""
    out = []
    for i in range(x.shape[0]):
        params_ = list(model.parameters())
        loss = F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, params_)
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        saved = [p.detach().clone() for p in params_]
        with torch.no_grad():
            for p, g in zip(params_, grads):
                p.add_(rho * g / (norm + 1e-12))
            out.append(float(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])))
            for p, s in zip(params_, saved):
                p.copy_(s)
    return torch.tensor(out, dtype=torch.float64)


def test_per_instance_loop_matches_batched_scores():
    torch.manual_seed(0)
    model = _TinyNet().double().eval()
    x = torch.randn(12, 6, dtype=torch.float64)
    loop_scores = saal_report.per_instance_saal_scores(model, x, rho=0.1).double()
    batched = saal_scores(model, x, rho=0.1).double()
    naive = _naive_perturbed(model, x, model(x).argmax(1), 0.1)
    assert torch.allclose(loop_scores, naive, atol=1e-10)
    assert torch.allclose(batched, naive, atol=1e-8)


class _Data:
    def __init__(self, x, y):
        self.x_train, self.y_train = x, y


def _tiny_pool():
    """A float64 tiny net, 30 inputs with 3-class labels and a pool with 4 of them labeled."""
    torch.manual_seed(1)
    model = _TinyNet().double().eval()
    x = torch.randn(30, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    return model, x, y, Pool(30, torch.tensor([0, 3, 7, 11]))


def test_perturbed_loss_cycle_metric_against_naive_reference():
    model, x, y, pool = _tiny_pool()
    rows = dict(cycle_metrics.compute("perturbed_loss", model, _Data(x, y), pool, None,
                                      {"sam_rho": 0.05}, torch.Generator().manual_seed(0)))
    lab, unl = pool.labeled, pool.unlabeled  # 26 unlabeled < 2,000: all of them are used
    want_l = float(_naive_perturbed(model, x[lab], y[lab], 0.05).mean())
    want_u = float(_naive_perturbed(model, x[unl], y[unl], 0.05).mean())
    assert rows["perturbed_loss_labeled"] == pytest.approx(want_l, rel=1e-6)
    assert rows["perturbed_loss_unlabeled"] == pytest.approx(want_u, rel=1e-6)
    assert rows["perturbed_loss_total"] == pytest.approx(4 / 30 * want_l + 26 / 30 * want_u, rel=1e-6)


def test_unknown_cycle_metric_is_rejected_by_name():
    with pytest.raises(params.ParamError, match="cycle_metrics"):
        params.validate(cycle_metrics=["no_such_metric"])
    with pytest.raises(ValueError, match="no_such_metric"):
        cycle_metrics.compute("no_such_metric", None, None, None, None, {}, None)


# ----------------------------------------------------------------------------- loop integration


def test_run_id_unchanged_when_cycle_metrics_empty():
    p = params.validate(dataset="digits")
    skip = params._HASH_SKIP_IF_DEFAULT  # keys added later are hashed only when set
    semantic = {k: v for k, v in p.items() if params.SCHEMA[k].semantic and not (k in skip and v == skip[k])}
    digest = hashlib.sha1(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:10]
    assert params.run_id(p) == f"digits-small_cnn-{digest}"
    assert params.run_id(params.validate(dataset="digits", cycle_metrics=["perturbed_loss"])) != params.run_id(p)


def test_cycle_metrics_add_rows_without_changing_selections(tmp_path):
    base = dict(experiment="t", dataset="digits", strategies=["saal"], seeds=[0], initial_size=10,
                budget=5, cycles=1, candidates=20, epochs=1, progress=False, threads=1,
                max_train=100, max_test=50, batch_size=32)
    plain = loop.run(base, results_dir=str(tmp_path / "a"))
    with_m = loop.run(base, results_dir=str(tmp_path / "b"), cycle_metrics=["perturbed_loss"])
    extra = set(with_m["metric"]) - set(plain["metric"])
    assert extra == {"perturbed_loss_labeled", "perturbed_loss_unlabeled", "perturbed_loss_total"}
    assert len(with_m[with_m["metric"] == "perturbed_loss_total"]) == 2  # one per round
    sel = lambda root: pd.concat(pd.read_csv(f) for f in sorted(Path(root).rglob("*.selected.csv")))
    pd.testing.assert_frame_equal(sel(tmp_path / "a").reset_index(drop=True),
                                  sel(tmp_path / "b").reset_index(drop=True))
    acc = lambda f: f[f["metric"] == "accuracy"]["value"].to_numpy()
    assert np.array_equal(acc(plain), acc(with_m))


def _naive_lambda1(model, x, y):
    """Largest eigenvalue of the full Hessian of ℓ(x, y; θ) in θ, built by torch.func.hessian."""
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]

    def loss(theta):
        parts, at = {}, 0
        for n, shape in zip(names, shapes):
            parts[n] = theta[at:at + shape.numel()].reshape(shape)
            at += shape.numel()
        logits = torch.func.functional_call(model, parts, (x[None],))
        return F.cross_entropy(logits, y[None])

    return float(torch.linalg.eigvalsh(torch.func.hessian(loss)(flat))[-1])


def test_lambda1_fixed_sample_measures_the_same_examples_every_cycle():
    torch.manual_seed(2)
    model = _TinyNet().double().eval()
    x = torch.randn(40, 6, dtype=torch.float64)
    data = _Data(x, torch.zeros(40, dtype=torch.long))
    pool = Pool(40, torch.tensor([0, 1]))
    p = {"sam_rho": 0.05, "cycle_metric_sizes": {"lambda1_fixed_sample": 8}}
    gen = lambda cycle: loop._generator(*cycle_metrics.generator_parts("lambda1_fixed_sample", 3, cycle))
    drawn = torch.randperm(40, generator=gen(0))[:8]  # the sample, as a naive draw of 8 of 40
    assert torch.equal(drawn, torch.randperm(40, generator=gen(5))[:8])  # no cycle in the seed
    first = dict(cycle_metrics.compute("lambda1_fixed_sample", model, data, pool, None, p, gen(0)))
    pool.add(drawn[:3][~pool.mask[drawn[:3]]])  # three of its members get labeled
    later = dict(cycle_metrics.compute("lambda1_fixed_sample", model, data, pool, None, p, gen(1)))
    for rows, members in ((first, drawn[~torch.isin(drawn, torch.tensor([0, 1]))]), (later, drawn[3:])):
        want = [_naive_lambda1(model, x[i], model(x[i][None]).argmax(1)[0]) for i in members]
        assert rows["fixed_lambda1_n"] == len(members)
        assert rows["fixed_lambda1"] == pytest.approx(float(np.mean(want)), rel=2e-2)
        assert rows["fixed_eig"] == pytest.approx(0.5 * 0.05 ** 2 * rows["fixed_lambda1"], rel=1e-9)
    assert cycle_metrics.generator_parts("bound_terms", 3, 1) != cycle_metrics.generator_parts("bound_terms", 3, 2)


def test_cycle_metric_sizes_set_the_sample_and_name_bad_entries():
    model, x, y, pool = _tiny_pool()
    p = {"sam_rho": 0.05, "cycle_metric_sizes": {"perturbed_loss": 5}}
    g = torch.Generator().manual_seed(0)
    unl = cycle_metrics._sample(pool.unlabeled, 5, torch.Generator().manual_seed(0))  # [5]
    rows = dict(cycle_metrics.compute("perturbed_loss", model, _Data(x, y), pool, None, p, g))
    want = float(_naive_perturbed(model, x[unl], y[unl], 0.05).mean())
    assert rows["perturbed_loss_unlabeled"] == pytest.approx(want, rel=1e-6)
    assert params.validate(cycle_metric_sizes={"bound_terms": 100})["cycle_metric_sizes"] == {"bound_terms": 100}
    for bad in ({"no_such_metric": 10}, {"bound_terms": 1}, {"bound_terms": "all"}):
        with pytest.raises(params.ParamError, match="cycle_metric_sizes"):
            params.validate(cycle_metric_sizes=bad)


def test_combined_tables_pool_only_runs_that_differ_in_the_optimizer(tmp_path):
    exp = tmp_path / "saal_perturbed_loss"
    rows = lambda opt, value: _tidy([("saal_perturbed_loss", f"r-{opt}", "digits", "small_cnn", "saal", 0, 1, 30,
                                      f"perturbed_loss_{part}", value)
                                     for part in ("unlabeled", "labeled", "total")])
    for name, opt, cycles, value in (("adam", "adam", 3, 1.0), ("sam", "sam", 3, 2.0),
                                     ("old-sam", "sam", 6, 50.0)):  # another protocol: left out
        run = exp / name
        run.mkdir(parents=True)
        rows(opt, value).to_csv(run / "metrics.csv", index=False)
        (run / "params.yaml").write_text(yaml.safe_dump({"experiment": "saal_perturbed_loss", "dataset": "digits",
                                                         "optimizer": opt, "cycles": cycles, "seeds": [0]}))
    table = saal_report.perturbed_loss_table(exp / "adam").set_index("optimizer")
    assert table.loc["adam", "unlabeled"] == 1.0 and table.loc["sam", "unlabeled"] == 2.0
    assert len(table) == 2
