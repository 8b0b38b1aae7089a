"""Object detection: SSD pieces against hand-computed cases, VOC mAP against hand-computed
precision/recall curves, the VOC loader on format-exact fixture files, the MNIST canvases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alstudy import data, models
from alstudy.detection import boxes as B
from alstudy.detection.loss import hard_negatives, multibox_loss
from alstudy.detection.map import average_precision, precision_recall, voc_map
from alstudy.detection.ssd import detect, prior_boxes, ssd_scales


# ----------------------------------------------------------------------------- boxes


def test_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 1 / 4, 0.0]])
    assert torch.allclose(B.iou(a, b), expected)
    # VOC devkit's inclusive pixels: [0,0,1,1] is 2x2 pixels; overlap with [1,1,2,2] is 1 pixel
    pix = B.iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 2.0, 2.0]]), offset=1.0)
    assert torch.allclose(pix, torch.tensor([[1 / 7]]))


def test_encode_hand_computed_and_round_trip():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    box = torch.tensor([[0.35, 0.2, 0.75, 0.6]])  # centre (0.55, 0.4), size (0.4, 0.4)
    g = B.encode(box, prior)
    expected = torch.tensor([[0.05 / (0.1 * 0.2), -0.1 / (0.1 * 0.2), math.log(2) / 0.2, math.log(2) / 0.2]])
    assert torch.allclose(g, expected, atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    priors = torch.cat([torch.rand(50, 2, generator=gen), 0.05 + torch.rand(50, 2, generator=gen) * 0.5], 1)
    lo = torch.rand(50, 2, generator=gen) * 0.5
    boxes = torch.cat([lo, lo + 0.05 + torch.rand(50, 2, generator=gen) * 0.4], 1)
    assert torch.allclose(B.decode(B.encode(boxes, priors), priors), boxes, atol=1e-5)


def test_match_two_boxes():
    # priors (cxcywh) as xyxy: p0 [0, 0, .2, .2], p1 [.5, .5, .7, .7], p2 [.52, .5, .72, .7], p3 [.9, .9, 1, 1]
    priors = B.xyxy_to_cxcywh(torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7],
                                            [0.52, 0.5, 0.72, 0.7], [0.9, 0.9, 1.0, 1.0]]))
    gt = torch.tensor([[0.1, 0.1, 0.4, 0.4],      # IoU with p0 = .01/.12 < 0.5, but its best prior
                       [0.5, 0.5, 0.7, 0.7]])     # IoU 1 with p1, 0.818 with p2
    matched, target, index = B.match(gt, torch.tensor([3, 7]), priors, threshold=0.5)
    assert target.tolist() == [4, 8, 8, 0]  # class + 1; p3 overlaps nothing: background
    assert index.tolist() == [0, 1, 1, -1]
    assert torch.allclose(matched[:3], gt[[0, 1, 1]])
    # no objects: all background
    _, t0, i0 = B.match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), priors)
    assert t0.tolist() == [0, 0, 0, 0] and i0.tolist() == [-1] * 4


def test_nms_on_overlapping_boxes_is_greedy():
    # A (.9) and B (.8) overlap with IoU .6; B and C (.7) overlap with IoU .6; A and C do not.
    boxes = torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4], [0.2, 0.0, 0.6, 0.4]],
                          [[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4], [0.2, 0.0, 0.6, 0.4]]])
    assert abs(float(B.iou(boxes[0, :1], boxes[0, 1:2])) - 0.6) < 1e-6
    assert float(B.iou(boxes[0, :1], boxes[0, 2:])) < 0.45
    scores = torch.tensor([[0.9, 0.8, 0.7], [0.5, 0.8, 0.7]])
    valid = torch.tensor([[True, True, True], [True, True, True]])
    keep = B.nms_batched(boxes, scores, valid, 0.45)
    # row 0: A kept, B suppressed by A, C kept (B was suppressed, so it cannot suppress C)
    # row 1: B first (0.8) suppresses A and C
    assert keep.tolist() == [[True, False, True], [False, True, False]]
    # an invalid candidate neither survives nor suppresses
    valid2 = torch.tensor([[False, True, True], [True, True, True]])
    assert B.nms_batched(boxes, scores, valid2, 0.45)[0].tolist() == [False, True, False]
    # a higher threshold keeps everything
    assert B.nms_batched(boxes, scores, valid, 0.7).all()


def test_hard_negative_mining_counts():
    loss = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 9.0, 8.0, 0.1, 0.2],
                         [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                         [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]])
    pos = torch.zeros(3, 10, dtype=torch.bool)
    pos[0, [6, 7]] = True          # 2 positives -> 6 negatives
    pos[1, [0, 1, 2]] = True       # 3 positives -> min(9, 7) = 7 negatives (all there are)
    neg = hard_negatives(loss, pos, 3.0)  # image 2: no positive -> no negative
    assert neg.sum(1).tolist() == [6, 7, 0]
    assert neg[0].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]  # the 6 largest non-positives
    assert not (neg & pos).any()


def _naive_multibox(loc, conf, targets, priors):
    tot_l = tot_c = 0.0
    n = 0
    for i, (boxes, labels) in enumerate(targets):
        matched, target, _ = B.match(boxes, labels, priors)
        g = B.encode(matched, priors)
        pos = [j for j in range(priors.shape[0]) if target[j] > 0]
        ce = [float(F.cross_entropy(conf[i, j][None], target[j][None])) for j in range(priors.shape[0])]
        negs = sorted((j for j in range(priors.shape[0]) if target[j] == 0), key=lambda j: -ce[j])
        negs = negs[:3 * len(pos)]
        tot_c += sum(ce[j] for j in pos + negs)
        tot_l += sum(float(F.smooth_l1_loss(loc[i, j], g[j], reduction="sum")) for j in pos)
        n += len(pos)
    return (tot_c + tot_l) / n, tot_l / n, tot_c / n


def test_multibox_loss_against_naive_loop():
    gen = torch.Generator().manual_seed(1)
    priors = prior_boxes([(4, 4), (2, 2)], [0.2, 0.45, 0.7], [[2], [2]])
    p = priors.shape[0]
    loc, conf = torch.randn(2, p, 4, generator=gen), torch.randn(2, p, 4, generator=gen)
    targets = [(torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8]]), torch.tensor([0, 2])),
               (torch.tensor([[0.2, 0.3, 0.6, 0.6]]), torch.tensor([1]))]
    res = multibox_loss(loc, conf, targets, priors)
    total, l, c = _naive_multibox(loc, conf, targets, priors)
    assert abs(float(res.total) - total) < 1e-4
    assert abs(float(res.loc) - l) < 1e-4 and abs(float(res.conf) - c) < 1e-4
    assert res.num_pos.tolist()[1] >= 1


# ----------------------------------------------------------------------------- default boxes, SSD


def test_ssd300_scales_and_prior_count():
    s = ssd_scales(6, 0.2, 0.9, first=0.1)
    assert s == pytest.approx([0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05])  # 30, 60, 111, ... at 300 px
    m = models.build("ssd", (3, 300, 300), 20, backbone="vgg16")
    assert m.feature_sizes == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert m.priors.shape == (8732, 4)
    loc, conf = m(torch.zeros(1, 3, 300, 300, dtype=torch.uint8))
    assert loc.shape == (1, 8732, 4) and conf.shape == (1, 8732, 21)


def test_prior_boxes_hand_computed():
    pri = prior_boxes([(1, 1)], [0.5, 0.8], [[2]], clip=False)
    r = math.sqrt(2)
    expected = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, math.sqrt(0.4), math.sqrt(0.4)],
                             [0.5, 0.5, 0.5 * r, 0.5 / r], [0.5, 0.5, 0.5 / r, 0.5 * r]])
    assert torch.allclose(pri, expected)
    two = prior_boxes([(1, 2)], [0.5, 0.8], [[]])  # one row, two columns: centres x = .25, .75
    assert two[:, 0].tolist() == [0.25, 0.25, 0.75, 0.75] and two[:, 1].tolist() == [0.5] * 4


def test_narrow_ssd_shapes_and_head_order():
    m = models.build("ssd", (1, 64, 64), 10)
    assert m.feature_sizes == [(8, 8), (4, 4), (2, 2), (1, 1)]
    x = torch.randint(0, 256, (3, 1, 64, 64), dtype=torch.uint8)
    (loc, conf), blocks = m.intermediates(x)
    assert loc.shape == (3, m.priors.shape[0], 4) and conf.shape == (3, m.priors.shape[0], 11)
    assert [b.shape[2:] for b in blocks] == [torch.Size(s) for s in m.feature_sizes]
    # prior j of the first map sits at cell (row, col) = divmod(j // A, 8): the head emits the
    # same order (shift one cell's conf output and look where it lands)
    a = 4
    j = (2 * 8 + 5) * a + 1  # row 2, col 5, anchor 1
    assert torch.allclose(m.priors[j, :2], torch.tensor([(5 + 0.5) / 8, (2 + 0.5) / 8]))
    with torch.no_grad():
        src = [torch.zeros_like(b) for b in blocks]
        conv = m.head.conf[0]
        conv.weight.zero_(), conv.bias.zero_()
        conv.bias[1 * 11 + 3] = 1.0  # anchor 1, class index 3 everywhere on map 0
        _, c = m.head(src)
    assert c[0, j, 3] == 1.0 and c[0, j - 1, 3] == 0.0


def test_detect_keeps_best_per_class_and_sorts():
    priors = B.xyxy_to_cxcywh(torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.11, 0.1, 0.31, 0.3],
                                            [0.6, 0.6, 0.9, 0.9]]))
    loc = torch.zeros(1, 3, 4)  # boxes = priors
    logits = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 3.0]]])  # bg, class 0, class 1
    det = detect(loc, logits, priors, conf_threshold=0.1)[0]
    p = torch.softmax(logits[0], -1)
    # class 0: prior 0 suppresses prior 1 (IoU .9); class 1 keeps prior 2; low class-1 scores of
    # priors 0/1 and class-0 of prior 2 are below 0.1 or suppressed
    got = list(zip(det["labels"].tolist(), det["priors"].tolist()))
    assert got[:2] == [(0, 0), (1, 2)]
    assert det["scores"][0] == pytest.approx(float(p[0, 1]))
    assert (det["scores"][:-1] >= det["scores"][1:]).all()


# ----------------------------------------------------------------------------- mAP


def test_average_precision_hand_computed_curve():
    # ranked detections TP, FP, TP, FP, TP with 4 positives:
    # recall .25 .25 .5 .5 .75, precision 1 .5 .667 .5 .6
    rec = np.array([0.25, 0.25, 0.5, 0.5, 0.75])
    prec = np.array([1.0, 0.5, 2 / 3, 0.5, 0.6])
    # 11-point: t = 0, .1, .2 -> 1; t = .3 .. .5 -> 2/3; t = .6, .7 -> .6; t = .8, .9, 1 -> 0
    assert average_precision(rec, prec, "11point") == pytest.approx((3 * 1 + 3 * 2 / 3 + 2 * 0.6) / 11)
    # all-point: envelope 1 on (0, .25], 2/3 on (.25, .5], .6 on (.5, .75]
    assert average_precision(rec, prec, "all") == pytest.approx(0.25 * 1 + 0.25 * 2 / 3 + 0.25 * 0.6)
    assert average_precision(np.array([]), np.array([]), "all") == 0.0


def test_voc_map_matching_rules_hand_computed():
    # image 0: objects A (class 0), D (class 0, difficult); image 1: object E (class 0)
    targets = B.BoxTargets.from_lists(
        [torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]), torch.tensor([[0.0, 0.0, 0.5, 0.5]])],
        [torch.tensor([0, 0]), torch.tensor([0])],
        [torch.tensor([False, True]), torch.tensor([False])])
    dets = [
        {"boxes": torch.tensor([[0.0, 0.0, 0.4, 0.4],     # .9 TP (A)
                                [0.01, 0.0, 0.4, 0.4],    # .8 FP: A already claimed
                                [0.5, 0.5, 0.9, 0.9],     # .7 ignored: difficult D
                                [0.0, 0.6, 0.2, 0.8]]),   # .6 FP: no overlap
         "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([0, 0, 0, 0])},
        {"boxes": torch.tensor([[0.0, 0.0, 0.5, 0.5],     # .65 TP (E)
                                [0.0, 0.0, 0.5, 0.5]]),   # class 1: no class-1 objects
         "scores": torch.tensor([0.65, 0.99]), "labels": torch.tensor([0, 1])},
    ]
    rec, prec, n_pos = precision_recall(dets, targets, 0)
    # ranking without the ignored one: TP(.9) FP(.8) TP(.65) FP(.6)
    assert n_pos == 2
    assert rec.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert prec == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    res = voc_map(dets, targets, 2, interpolation="all")
    assert res["ap"][0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert math.isnan(res["ap"][1]) and res["map"] == pytest.approx(res["ap"][0])
    res11 = voc_map(dets, targets, 2, interpolation="11point")
    assert res11["map"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


# ----------------------------------------------------------------------------- box-list targets


def test_box_targets_index_like_a_tensor():
    t = B.BoxTargets.from_lists([torch.rand(2, 4), torch.rand(0, 4), torch.rand(3, 4)],
                                [torch.tensor([1, 2]), torch.tensor([], dtype=torch.long), torch.tensor([3, 4, 5])])
    assert len(t) == 3 and t.shape[0] == 3 and t.num_objects == 5
    sub = t[torch.tensor([2, 0])]
    assert len(sub) == 2 and sub[0][1].tolist() == [3, 4, 5] and sub[1][1].tolist() == [1, 2]
    assert torch.equal(sub[0][0], t[2][0])
    assert t[torch.tensor([False, True, True])][0][1].numel() == 0
    assert t[1:][1][1].tolist() == [3, 4, 5] and t[-1][1].tolist() == [3, 4, 5]
    with pytest.raises(IndexError):
        t[3]


# ----------------------------------------------------------------------------- data


def _write_voc_fixture(root):
    """A format-exact VOCdevkit: 2 VOC2007 trainval, 1 VOC2007 test, 1 VOC2012 trainval image."""
    from PIL import Image

    specs = {
        ("2007", "000005"): (40, 30, [("chair", 11, 6, 30, 21, 0), ("person", 1, 1, 40, 30, 1)]),
        ("2007", "000007"): (32, 32, [("car", 5, 5, 20, 28, 0)]),
        ("2007", "000001"): (24, 36, [("dog", 2, 3, 20, 30, 0), ("dog", 5, 5, 9, 9, 1)]),
        ("2012", "2008_000008"): (36, 24, [("horse", 4, 2, 30, 20, 0)]),
    }
    rng = np.random.default_rng(0)
    for (year, ident), (w, h, objs) in specs.items():
        folder = root / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / "JPEGImages" / f"{ident}.jpg")
        xml_objs = "".join(
            f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for n, x0, y0, x1, y1, d in objs)
        (folder / "Annotations" / f"{ident}.xml").write_text(
            f"<annotation><folder>VOC{year}</folder><filename>{ident}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{xml_objs}</annotation>")
    main07 = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (main07 / "trainval.txt").write_text("000005\n000007\n")
    (main07 / "test.txt").write_text("000001\n")
    (root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "trainval.txt").write_text("2008_000008\n")
    return specs


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    _write_voc_fixture(root)
    return root


def test_voc_loader_on_fixture_files(voc_root):
    assert any(r.name == "voc0712" and r.available for r in data.available(voc_root))
    ds = data.load("voc0712", root=voc_root)
    assert ds.task == "detection" and ds.num_classes == 20
    assert ds.x_train.shape == (3, 3, 300, 300) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (1, 3, 300, 300)
    assert ds.meta["train_ids"] == ["VOC2007/000005", "VOC2007/000007", "VOC2012/2008_000008"]
    b, l, d = ds.y_train[0]
    names = ds.meta["class_names"]
    assert [names[i] for i in l.tolist()] == ["chair", "person"] and d.tolist() == [False, True]
    assert torch.allclose(b[0], torch.tensor([10 / 40, 5 / 30, 29 / 40, 20 / 30]))  # (px - 1) / size
    assert ds.y_train.sizes[0].tolist() == [40.0, 30.0]
    bt, lt, dt = ds.y_test[0]
    assert [names[i] for i in lt.tolist()] == ["dog", "dog"] and dt.tolist() == [False, True]
    assert [names[i] for i in ds.y_train[2][1].tolist()] == ["horse"]


def test_voc_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DatasetUnavailable, match="VOCtrainval_06-Nov-2007"):
        data.load("voc0712", root=tmp_path)


def test_voc_unknown_class_is_named(tmp_path):
    from alstudy.detection.data import read_voc_annotation

    path = tmp_path / "a.xml"
    path.write_text("<annotation><size><width>10</width><height>10</height></size><object><name>unicorn"
                    "</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                    "<ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(ValueError, match="unicorn"):
        read_voc_annotation(path)


def test_mnist_canvases_deterministic_and_train_digits_only():
    from alstudy.detection.data import compose_canvases, load_mnist_detection

    xtr, ytr, xte, yte, meta = load_mnist_detection(0, n_train=40, n_test=10)
    again = load_mnist_detection(0, n_train=40, n_test=10)
    assert torch.equal(xtr, again[0]) and torch.equal(ytr.boxes, again[1].boxes)
    assert not set(meta["train_digits"]) & set(meta["test_digits"])
    assert xtr.shape == (40, 1, 64, 64) and len(ytr) == 40 and 1 <= int(ytr.counts.min())
    assert int(ytr.counts.max()) <= 4 and ((ytr.boxes >= 0) & (ytr.boxes <= 1)).all()
    # the box is the digit's tight box: ink inside, none outside on that canvas's single digit
    digits = np.zeros((1, 28, 28), np.uint8)
    digits[0, 8:20, 10:16] = 255
    img, t = compose_canvases(digits, np.array([7]), 3, np.random.default_rng(1), max_objects=1)
    for k in range(3):
        (x0, y0, x1, y1), = (t[k][0] * 64).round().long().tolist()
        ink = img[k, 0] >= 64
        assert ink[y0:y1, x0:x1].sum() == ink.sum()  # all ink inside the box ...
        assert ink[y0, x0:x1].any() and ink[y1 - 1, x0:x1].any()  # ... and the box is tight
        assert ink[y0:y1, x0].any() and ink[y0:y1, x1 - 1].any()
        assert t[k][1].tolist() == [7]


def test_ssd_augment_moves_boxes_with_the_pixels():
    from alstudy.detection.train import ssd_augment

    img = torch.zeros(1, 1, 60, 60, dtype=torch.uint8)
    img[0, 0, 12:30, 24:48] = 255  # the object: box (24/60, 12/60, 48/60, 30/60)
    target = [(torch.tensor([[0.4, 0.2, 0.8, 0.5]]), torch.tensor([3]))]
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        out, t = ssd_augment(img, target, gen)
        assert out.shape == img.shape and out.dtype == torch.uint8
        (boxes, labels), = t
        assert labels.tolist() == [3] and ((boxes >= -1e-6) & (boxes <= 1 + 1e-6)).all()
        x0, y0, x1, y1 = (boxes[0] * 60).tolist()
        white = out[0, 0].float() > 127
        ys, xs = torch.nonzero(white, as_tuple=True)
        if ys.numel() < 4:  # object shrunk to almost nothing by a 4x zoom-out
            continue
        inside = (xs + 0.5 >= x0 - 1.5) & (xs + 0.5 <= x1 + 1.5) & (ys + 0.5 >= y0 - 1.5) & (ys + 0.5 <= y1 + 1.5)
        assert inside.float().mean() > 0.95  # the bright pixels stay in the transformed box


def test_ceiling_fraction_and_statement_hand_computed():
    import pandas as pd

    from alstudy.detection.ceiling import ceiling_fraction
    from alstudy.reports.detection import ceiling_statement, detection_summary

    rows = []
    for strat, finals in {"random": [0.4, 0.5], "saal": [0.6, 0.84]}.items():
        for seed, final in enumerate(finals):
            for cycle, (n, v) in enumerate([(10, 0.1), (20, final)]):
                rows.append(dict(experiment="e", run_id="r", dataset="d", model="ssd", strategy=strat, seed=seed,
                                 cycle=cycle, n_labeled=n, metric="map50", value=v))
    frame = pd.DataFrame(rows)
    ceil = pd.DataFrame([dict(experiment="e", run_id="r", dataset="d", model="ssd", strategy="full training set",
                              seed=0, cycle=-1, n_labeled=100, metric="map50", value=0.8)])
    frac = ceiling_fraction(frame, ceil, "map50").set_index("strategy")
    assert frac.loc["random", "fraction"] == pytest.approx(0.45 / 0.8)
    assert frac.loc["saal", "fraction"] == pytest.approx(0.72 / 0.8) and frac.loc["saal", "n_labeled"] == 20
    text = ceiling_statement(frame, ceil)
    assert "56–90% of the ceiling" in text and "100 training images" in text and "20 labels, 20%" in text
    table = detection_summary(frame, ceil).set_index("strategy")
    assert table.loc["saal", "of_ceiling"] == "90%" and table.loc["random", "final"] == "0.4500 ± 0.0707"
