"""Detection strategies against per-image naive loops; the AL loop and the ceiling on detection data;
the paper preset end to end at paper shapes (SSD300, VGG16) on VOC-format fixture files."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from alstudy import data, loop, models, params, strategies
from alstudy.detection import ceiling
from alstudy.detection import acquisition as A
from alstudy.detection.boxes import match
from alstudy.pool import Pool
from alstudy.selection import kmeanspp
from alstudy.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def det_data():
    return data.load("mnist_detection", max_train=60, max_test=12)


@pytest.fixture(scope="module")
def trained(det_data):
    torch.manual_seed(0)
    m = models.build("ssd", det_data.input_shape, 10, width=8)
    fit(m, det_data.x_train[:40], det_data.y_train[:40], TrainConfig(epochs=3, batch_size=16),
        task="detection")
    return m.eval()


def _naive_pseudo(model, x, confidence, min_boxes, corresponding):
    """Per-image pseudo boxes and corresponding priors, computed one image at a time."""
    from alstudy.detection.ssd import detect

    rows = []
    for i in range(x.shape[0]):
        loc, conf = model(x[i:i + 1])
        d = detect(loc, conf, model.priors, conf_threshold=0.01)[0]
        keep = d["scores"] >= confidence
        if int(keep.sum()) < min_boxes:
            keep = torch.arange(keep.numel()) < min_boxes
        d = {k: v[keep] for k, v in d.items()}
        if corresponding == "source":
            rows.append((d["priors"].tolist(), (d["labels"] + 1).tolist()))
        else:
            _, t, _ = match(d["boxes"], d["labels"], model.priors)
            pos = (t > 0).nonzero().flatten()
            rows.append((pos.tolist(), t[pos].tolist()))
    return rows


def _naive_saal(model, x, rows, rho):
    """SAAL detection score image by image: deep copy, sum of CE over the corresponding priors,
    SAM step over every parameter, the same sum again."""
    out = []
    for i, (pri, cls) in enumerate(rows):
        net = copy.deepcopy(model).eval()
        xi = x[i:i + 1]
        conf = net(xi)[1][0]
        loss = sum(F.cross_entropy(conf[p][None], torch.tensor([c])) for p, c in zip(pri, cls))
        ps = list(net.parameters())
        gs = torch.autograd.grad(loss, ps, allow_unused=True)
        gs = [torch.zeros_like(p) if g is None else g for p, g in zip(ps, gs)]
        norm = torch.sqrt(sum((g ** 2).sum() for g in gs))
        with torch.no_grad():
            for p, g in zip(ps, gs):
                p += rho * g / (norm + 1e-12)
            conf = net(xi)[1][0]
            out.append(float(sum(F.cross_entropy(conf[p][None], torch.tensor([c])) for p, c in zip(pri, cls))))
    return torch.tensor(out)


@pytest.mark.parametrize("corresponding", ["source", "matched"])
def test_saal_detection_score_matches_per_image_loop(trained, det_data, corresponding):
    x = det_data.x_train[40:52]
    strat = strategies.build("saal_detection", confidence=0.3, min_boxes=2, corresponding=corresponding,
                             rho=0.05, chunk_size=5)
    rows = _naive_pseudo(trained, x, 0.3, 2, corresponding)
    expected = _naive_saal(trained, x, rows, 0.05)
    got = strat.score(trained, x)
    assert torch.allclose(got.double(), expected.double(), rtol=1e-4, atol=1e-4)
    # the packaged reference loop agrees too, and the clean loss is below the perturbed one
    dets = A.pseudo_boxes(trained, x, confidence=0.3, min_boxes=2)
    pt = A.pseudo_targets(dets, trained.priors, corresponding)
    pert, clean, norm = A.perturbed_detection_losses_loop(trained, x, pt, rho=0.05)
    assert torch.allclose(pert, expected.double(), rtol=1e-4, atol=1e-4)
    assert (pert >= clean - 1e-6).all() and (norm > 0).all()
    # selection = the top images by that score
    pool = Pool(det_data.n_train, torch.arange(40))
    pool_x = det_data.x_train[pool.unlabeled]
    picked = strat.select(trained, det_data, pool, 3, torch.Generator().manual_seed(0))
    full = _naive_saal(trained, pool_x, _naive_pseudo(trained, pool_x, 0.3, 2, corresponding), 0.05)
    assert sorted(picked.tolist()) == sorted(pool.unlabeled[full.topk(3).indices].tolist())


def test_saal_detection_leaves_model_unchanged(trained, det_data):
    before = copy.deepcopy(trained.state_dict())
    trained.train()
    strategies.build("saal_detection").score(trained, det_data.x_train[:4])
    assert trained.training
    trained.eval()
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())


@pytest.mark.parametrize("aggregate", ["max", "sum", "mean"])
def test_entropy_detection_against_per_box_loop(trained, det_data, aggregate):
    x = det_data.x_train[40:50]
    rows = _naive_pseudo(trained, x, 0.5, 1, "source")
    expected = []
    for i, (pri, _) in enumerate(rows):
        with torch.no_grad():
            p = torch.softmax(trained(x[i:i + 1])[1][0].double(), -1)
        h = [float(-(p[j] * p[j].log()).sum()) for j in pri]
        expected.append({"max": max(h), "sum": sum(h), "mean": sum(h) / len(h)}[aggregate] if h else 0.0)
    got = strategies.build("entropy_detection", aggregate=aggregate).score(trained, x)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_badge_detection_gradients_and_selection(trained, det_data):
    x = det_data.x_train[40:48]
    dets = A.pseudo_boxes(trained, x)
    pt = A.pseudo_targets(dets, trained.priors, "source")
    g = A.conf_head_gradients(trained, x, pt, chunk_size=3)
    head = dict(trained.head.named_parameters())
    names = sorted(n for n in head if n.startswith("conf."))
    ref = []
    for i in range(x.shape[0]):
        pri, cls, w = pt.slice(i, i + 1)
        loss = A.pseudo_box_loss(trained(x[i:i + 1])[1], pri, cls, w)[0]
        ref.append(torch.cat([t.flatten() for t in torch.autograd.grad(loss, [head[n] for n in names])]))
    assert torch.allclose(g, torch.stack(ref).double(), atol=1e-5)
    # CountSketch is the linear map S with S[h(j), j] = s(j)
    bucket = torch.randint(16, (g.shape[1],), generator=torch.Generator().manual_seed(3))
    sign = torch.randint(2, (g.shape[1],), generator=torch.Generator().manual_seed(4)).double() * 2 - 1
    S = torch.zeros(16, g.shape[1], dtype=torch.float64)
    S[bucket, torch.arange(g.shape[1])] = sign
    assert torch.allclose(A.count_sketch(g, bucket, sign, 16), g @ S.T)
    # the exact (unsketched) strategy = k-means++ seeding on those gradients
    pool = Pool(48, torch.arange(40))
    sub = data.Dataset("d", "detection", det_data.x_train[:48], det_data.y_train[:48], det_data.x_test,
                       det_data.y_test, 10, "test")
    strat = strategies.build("badge_detection", sketch_dim=None, candidates="all")
    picked = strat.select(trained, sub, pool, 3, torch.Generator().manual_seed(5))
    expected = kmeanspp(torch.stack(ref).double(), 3, torch.Generator().manual_seed(5))
    assert picked.tolist() == (40 + expected).tolist()
    sketched = strategies.build("badge_detection", sketch_dim=64).select(
        trained, sub, pool, 3, torch.Generator().manual_seed(5))
    assert len(set(sketched.tolist())) == 3 and all(40 <= i < 48 for i in sketched.tolist())


def test_strategies_that_cannot_apply_name_the_task(det_data):
    p = params.validate(dataset="mnist_detection", model="ssd", strategies=["saal"], initial_mode="random")
    with pytest.raises(params.ParamError, match=r"'saal' supports \['classification'\].*detection.*saal_detection"):
        params.check_against_data(p, 1000, 10, "detection")
    q = params.validate(dataset="mnist", strategies=["saal_detection"])
    with pytest.raises(params.ParamError, match="supports \\['detection'\\] tasks, not the classification"):
        params.check_against_data(q, 300, 10, "classification")
    with pytest.raises(params.ParamError, match="augment"):
        params.check_against_data(params.validate(dataset="mnist_detection", model="ssd", strategies=["random"],
                                                  initial_mode="random", augment="crop_flip"),
                                  1000, 10, "detection")
    with pytest.raises(params.ParamError, match="initial_mode.*'random'"):
        params.check_against_data(params.validate(dataset="mnist_detection", model="ssd", strategies=["random"]),
                                  1000, 10, "detection")
    with pytest.raises(ValueError, match="aggregate"):
        strategies.build("entropy_detection", aggregate="median")


def test_loop_and_ceiling_on_detection(det_data, tmp_path):
    p = dict(experiment="det_test", dataset="mnist_detection", max_train=60, max_test=12, model="ssd",
             model_options={"width": 8}, seeds=[0], initial_size=8, initial_mode="random", budget=6,
             cycles=1, candidates=20, epochs=1, batch_size=8, results_dir=str(tmp_path), progress=False,
             strategies=["random", "saal_detection", "entropy_detection", "badge_detection", "ll4al"])
    frame = loop.run(p, data=det_data)
    maps = frame[frame["metric"] == "map50"]
    assert set(maps["strategy"]) == {"random", "saal_detection", "entropy_detection", "badge_detection", "ll4al"}
    assert maps.groupby("strategy")["cycle"].apply(sorted).map(list).eq([[0, 1]] * 5).all()
    assert maps["n_labeled"].max() == 14 and maps["value"].between(0, 1).all()
    # every strategy of a seed starts from the same initial model and data: same cycle-0 mAP
    # (except LL4AL, whose loss-prediction module back-propagates into the detector)
    assert maps[(maps["cycle"] == 0) & (maps["strategy"] != "ll4al")]["value"].nunique() == 1
    run_dir = loop.run_dir(params.validate(p))
    ceil = ceiling.train_ceiling(p, data=det_data)
    assert (run_dir / "ceiling.csv").exists() and set(ceil["metric"]) >= {"map50", "map50_all"}
    assert int(ceil["n_labeled"].iloc[0]) == 60
    again = ceiling.train_ceiling(p, data=det_data)  # read back, not retrained
    pd.testing.assert_frame_equal(ceil, again, check_dtype=False)
    ex = ceiling.read_examples(run_dir)
    assert ex is not None and ex[0].shape == (8, 1, 64, 64) and len(ex[1]) == 8
    frac = ceiling.ceiling_fraction(frame, ceil, "map50")
    assert len(frac) == 5 and (frac["n_labeled"] == 14).all()


def test_paper_preset_end_to_end_at_paper_shapes_on_voc_fixtures(tmp_path):
    """The paper preset with epochs, cycles and pool capped: SSD300 (VGG16), 300x300, all strategies."""
    from test_detection import _write_voc_fixture

    _write_voc_fixture(tmp_path / "voc")
    preset = yaml.safe_load((ROOT / "params" / "saal_detection.paper.yaml").read_text())
    assert preset["model"] == "ssd" and preset["model_options"]["backbone"] == "vgg16"
    preset.update(data_root=str(tmp_path / "voc"), results_dir=str(tmp_path / "results"), seeds=[0],
                  max_train=2, initial_size=1, budget=1, cycles=1, candidates="all", epochs=1, batch_size=2,
                  lr_milestones=[], eval_batch_size=2, progress=False, device="cpu",
                  model_options={**preset["model_options"], "backbone_weights": None})  # no weights file here
    frame = loop.run(params.validate(preset))
    maps = frame[frame["metric"] == "map50"]
    assert set(maps["strategy"]) == set(params.strategy_specs(params.validate(preset)))
    assert sorted(maps["cycle"].unique()) == [0, 1] and maps["value"].between(0, 1).all()
