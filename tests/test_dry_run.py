"""Every paper preset runs in dry-run mode: its paper models, input shapes, optimizer and code
paths, on small files written here in each dataset's exact on-disk format (CIFAR-10 python
pickles, SVHN format-2 .mat files, Fashion-MNIST idx files, the official MRPC TSV files; MNIST
and Ames are the shipped data). A preset that crashes at paper shapes fails here."""

import gzip
import pickle
import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from alstudy import cli, dryrun, notebooks, params

ROOT = Path(__file__).resolve().parents[1]
#: Dense-task paper presets run end to end at paper shapes on their own format-exact fixtures
#: (Cityscapes and VOC trees) in tests/test_segmentation.py and tests/test_detection_strategies.py.
OWN_FIXTURE_TESTS = {"ns_segmentation.paper.yaml", "saal_detection.paper.yaml"}
PRESETS = sorted(p for p in (ROOT / "params").glob("*.paper*.yaml") if p.name not in OWN_FIXTURE_TESTS)
N_TRAIN, N_TEST = 40, 20  # fixture sizes: every class present in both


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_fixture_data(root: Path, rng: np.random.Generator) -> None:
    """Small files in the exact formats the loaders of :mod:`alstudy.data` read."""
    c10 = root / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    per_batch = N_TRAIN // 5
    for i in range(1, 6):
        (c10 / f"data_batch_{i}").write_bytes(pickle.dumps({
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [(i * per_batch + j) % 10 for j in range(per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]}))
    (c10 / "test_batch").write_bytes(pickle.dumps({
        b"labels": [j % 10 for j in range(N_TEST)],
        b"data": rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8)}))
    (c10 / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % c for c in range(10)]}))

    from scipy.io import savemat

    svhn = root / "svhn"
    svhn.mkdir()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        savemat(svhn / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                              "y": (np.arange(n) % 10 + 1).reshape(-1, 1)})  # 10 = digit 0

    fashion = root / "fashion_mnist"
    fashion.mkdir()
    for stem, arr in (("train-images-idx3-ubyte", rng.integers(0, 256, (N_TRAIN, 28, 28))),
                      ("train-labels-idx1-ubyte", np.arange(N_TRAIN) % 10),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (N_TEST, 28, 28))),
                      ("t10k-labels-idx1-ubyte", np.arange(N_TEST) % 10)):
        _write_idx(fashion / f"{stem}.gz", arr)

    mrpc = root / "mrpc"
    mrpc.mkdir()
    words = "the court said on friday that shares of the company rose after its report".split()
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for k in range(n):
            first, second = " ".join(rng.choice(words, 9)), " ".join(rng.choice(words, 11))
            lines.append(f"{k % 2}\t{100 + k}\t{200 + k}\t{first}\t{second}")
        (mrpc / f"msr_paraphrase_{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-data")
    write_fixture_data(root, np.random.default_rng(0))
    return root


def _is_loop_notebook(name: str) -> bool:
    return set(notebooks.parameters(notebooks.path_of(name))) <= set(params.SCHEMA)


def test_every_paper_preset_has_a_notebook():
    assert len(PRESETS) >= 20
    for preset in PRESETS:
        notebooks.path_of(preset.name.split(".")[0])


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_paper_preset_runs_in_dry_run_mode(preset, data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALSTUDY_DATA", str(data_root))  # also seen by notebook kernels
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the scratch folder goes
    name = preset.name.split(".")[0]
    if _is_loop_notebook(name):
        rc = cli.main(["run", str(preset), "--dry-run", "-p", "data_root", str(data_root),
                       "-p", "progress", "false"])
    else:
        rc = cli.main(["notebook", name, "-f", str(preset), "--dry-run", "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    (scratch,) = tmp_path.glob("alstudy-dry-run-*")
    assert f"dry run: results under {scratch}" in err
    if not _is_loop_notebook(name):
        (executed,) = scratch.rglob(f"{name}.ipynb")
        assert executed.stat().st_size > 0
        return
    (saved,) = scratch.rglob("params.yaml")
    ran = yaml.safe_load(saved.read_text())
    paper = params.load(preset)
    for key in ("dataset", "model", "model_options", "optimizer", "batch_size", "augment", "momentum",
                "weight_decay", "lr", "lr_gamma", "sam_rho", "sam_base", "initial_mode",
                "cycle_metrics", "warm_start"):
        assert ran[key] == paper[key], key  # the paper's models, shapes and training
    assert [label for label in params.strategy_specs(ran)] == list(params.strategy_specs(paper))
    frame = pd.read_csv(saved.parent / "metrics.csv")
    assert sorted(frame.seed.unique()) == paper["seeds"][:1]
    assert sorted(frame.cycle.unique()) == [0, 1]
    assert set(frame.strategy) == set(params.strategy_specs(paper))
    assert frame.value[frame.metric.isin(["accuracy", "mae"])].notna().all()


def test_dry_run_keeps_everything_but_the_amount_of_work(data_root):
    paper = params.load(ROOT / "params" / "ns_classification.paper_cifar10.yaml", data_root=str(data_root))
    dry = dryrun.loop_params(paper, "/scratch")
    capped = {"seeds", "cycles", "epochs", "lr_milestones", "initial_size", "budget", "candidates",
              "max_train", "max_test", "results_dir", "strategies"}
    assert {k: v for k, v in dry.items() if k not in capped} == {k: v for k, v in paper.items() if k not in capped}
    assert dry["seeds"] == [0] and dry["cycles"] == 1 and dry["epochs"] == 1 and dry["lr_milestones"] == [1]
    assert dry["initial_size"] == dryrun.INITIAL and dry["budget"] == dryrun.BUDGET
    assert dry["candidates"] == dryrun.CANDIDATES and dry["results_dir"] == "/scratch"
    specs = params.strategy_specs(dry)
    assert specs["noise_stability"] == ("noise_stability", {"K": 2})
    assert specs["bald"] == ("bald", {"T": 2})
    assert specs["qbc"] == ("qbc", {"M": 2})
    vaal_paper = params.strategy_specs(paper)["vaal"][1]
    assert specs["vaal"] == ("vaal", {**vaal_paper, "steps": 2})  # only the iteration count is capped
    assert specs["random"] == ("random", {})
    saal = dryrun.loop_params(params.load(ROOT / "params" / "saal_paper_vs_official.paper.yaml",
                                          data_root=str(data_root)), "/scratch")
    specs = params.strategy_specs(saal)
    assert specs["ascent5"] == ("saal", {"ascent_steps": 2, "candidates": dryrun.CANDIDATES})
    assert specs["official"][1]["variant"] == "official"
    assert saal["initial_size"] == 10  # balanced over the 10 classes


def test_dry_run_of_a_notebook_goes_to_scratch(data_root, tmp_path, monkeypatch, capsys):
    """The notebook route (papermill) of an AL-loop preset, with a results_dir that is ignored."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    rc = cli.main(["notebook", "quickstart", "-f", str(ROOT / "params" / "quickstart.paper.yaml"),
                   "--dry-run", "-q", "-p", "results_dir", str(tmp_path / "results")])
    assert rc == 0, capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    (executed,) = (tmp_path / "tmp").rglob("quickstart.ipynb")
    (saved,) = executed.parent.glob("params.yaml")
    assert yaml.safe_load(saved.read_text())["epochs"] == 1
