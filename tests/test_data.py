"""Dataset loaders, on format-exact fixture files written here and on the shipped data."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from alstudy import data


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_mnist_is_real_shuffled_and_split_by_seed():
    ds = data.load("mnist", seed=0)
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.num_classes == 10 and ds.task == "classification"
    # the shipped file is sorted by label: a shuffled, stratified split has every class in both
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.y_train[:50].unique().numel() > 5
    # train statistics are standardised
    assert abs(float(ds.x_train.mean())) < 1e-3 and abs(float(ds.x_train.std()) - 1) < 1e-2
    same, other = data.load("mnist", seed=0), data.load("mnist", seed=1)
    assert torch.equal(same.x_test, ds.x_test)
    assert not torch.equal(other.x_test, ds.x_test)


def test_digits_and_subsampling():
    ds = data.load("digits", max_train=300, max_test=100)
    assert ds.x_train.shape == (300, 1, 8, 8) and ds.x_test.shape == (100, 1, 8, 8)


def test_ames_one_hot_standardised_half_split():
    ds = data.load("ames")
    assert ds.task == "regression" and ds.num_classes is None
    assert ds.x_train.shape[0] == 2930 // 2 and ds.x_test.shape[0] == 2930 - 2930 // 2
    assert ds.x_train.shape[1] > 250  # numeric + one-hot categoricals
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_test).all()
    # target standardised on the training half; MAE is reported in dollars via target_scale
    assert abs(float(ds.y_train.mean())) < 1e-5 and 50_000 < ds.meta["target_scale"] < 100_000


def test_fashion_mnist_reads_idx_files(tmp_path, rng):
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    xtr, ytr = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)
    xte, yte = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    for stem, arr in [("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)]:
        _write_idx(folder / f"{stem}.gz", arr)
    ds = data.load("fashion_mnist", root=folder)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.y_test.tolist() == yte.tolist()
    # the normalisation is a per-channel affine map of the raw pixels
    raw = torch.from_numpy(xtr).float().div(255)
    mean, std = raw.mean(), raw.std()
    assert torch.allclose(ds.x_train[:, 0], (raw - mean) / std, atol=1e-5)


def test_cifar10_and_cifar100_pickles(tmp_path, rng):
    _cifar10_folder(tmp_path, rng)
    ds = data.load("cifar10", root=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.y_test.tolist() == [7, 8, 9]

    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for split, n in [("train", 6), ("test", 2)]:
        (c100 / split).write_bytes(pickle.dumps({
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": list(range(90, 90 + n)), b"coarse_labels": [0] * n}))
    ds = data.load("cifar100", root=tmp_path)
    assert ds.num_classes == 100 and ds.y_train.tolist() == list(range(90, 96))


def test_svhn_mat_files_map_label_10_to_0(tmp_path, rng):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    savemat(folder / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [2], [10]])})
    savemat(folder / "test_32x32.mat", {"X": x[..., :2], "y": np.array([[3], [10]])})
    ds = data.load("svhn", root=tmp_path)
    assert ds.y_train.tolist() == [0, 1, 2, 0] and ds.y_test.tolist() == [3, 0]
    # [H, W, C, N] -> [N, C, H, W]: channel 1 of image 2 is the raw plane, affinely normalised
    raw = torch.from_numpy(x[:, :, 1, 2]).float() / 255
    got = ds.x_train[2, 1] * ds.meta["channel_std"][1] + ds.meta["channel_mean"][1]
    assert torch.allclose(got, raw, atol=1e-5)


def test_unavailable_dataset_has_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSTUDY_DATA", str(tmp_path))
    with pytest.raises(data.DatasetUnavailable, match="cifar-10-python.tar.gz"):
        data.load("cifar10")
    rows = {r.name: r for r in data.available()}
    assert rows["mnist"].available and not rows["svhn"].available
    assert "train_32x32.mat" in rows["svhn"].where


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="available names"):
        data.load("mnits")


def test_fashion_mnist_missing_everywhere_gives_the_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_DEBIAN", tmp_path / "nothing-here")
    monkeypatch.setenv("ALSTUDY_DATA", str(tmp_path))
    with pytest.raises(data.DatasetUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        data.load("fashion_mnist")


def _cifar10_folder(tmp_path, rng):
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for i in range(1, 6):
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [i % 10] * 4}
        (c10 / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (c10 / "test_batch").write_bytes(pickle.dumps(
        {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [7, 8, 9]}))
    return c10


def test_truncated_or_corrupted_cifar_file_is_named_and_called_corrupt(tmp_path, rng):
    c10 = _cifar10_folder(tmp_path, rng)
    good = (c10 / "data_batch_2").read_bytes()
    (c10 / "data_batch_2").write_bytes(good[: len(good) // 2])  # truncated download
    with pytest.raises(data.DatasetCorrupt, match=r"data_batch_2 is corrupt or truncated.*to get it again"):
        data.load("cifar10", root=tmp_path)
    (c10 / "data_batch_2").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(data.DatasetCorrupt, match=r"data_batch_2 is corrupt"):
        data.load("cifar10", root=tmp_path)
    (c10 / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(data.DatasetCorrupt, match=r"data_batch_2 is corrupt: data uint8 \(4, 100\)"):
        data.load("cifar10", root=tmp_path)


def test_missing_cifar_batch_file_is_named(tmp_path, rng):
    c10 = _cifar10_folder(tmp_path, rng)
    (c10 / "data_batch_3").unlink()
    with pytest.raises(data.DatasetUnavailable, match=r"lacks data_batch_3 .*To get it: download cifar-10"):
        data.load("cifar10", root=tmp_path)


def test_corrupt_svhn_and_idx_files_are_named(tmp_path, rng):
    folder = tmp_path / "svhn"
    folder.mkdir()
    (folder / "train_32x32.mat").write_bytes(b"MATLAB 5.0 but then nothing")
    (folder / "test_32x32.mat").write_bytes(b"")
    with pytest.raises(data.DatasetCorrupt, match=r"train_32x32\.mat is corrupt"):
        data.load("svhn", root=tmp_path)
    fm = tmp_path / "fashion_mnist"
    fm.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        _write_idx(fm / f"{stem}.gz", rng.integers(0, 256, (3, 28, 28)))
    (fm / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 7))
    with pytest.raises(data.DatasetCorrupt, match=r"train-images-idx3-ubyte\.gz is corrupt"):
        data.load("fashion_mnist", root=fm)


def test_unknown_dataset_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"'mnits' \(did you mean 'mnist'\?\); available names: \[.*'svhn'"):
        data.load("mnits")
