"""NoiseStability main experiments: notebooks' parameters and presets, per-cycle table, text data and model."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from alstudy import data, models, notebooks, params
from alstudy.reports import ns_main
from alstudy.results import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["ns_classification", "ns_regression", "ns_text_pairs"]


# --------------------------------------------------------------------------- notebooks and presets


@pytest.mark.parametrize("name", NAMES)
def test_parameters_cell_uses_schema_keys_only(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    defaults = notebooks.parameters(ROOT / "notebooks" / f"{name}.ipynb")
    assert set(defaults) <= set(params.SCHEMA), set(defaults) - set(params.SCHEMA)
    assert defaults["experiment"] == name
    assert "results_dir" not in defaults
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_validates_over_the_notebook_defaults(name):
    defaults = notebooks.parameters(ROOT / "notebooks" / f"{name}.ipynb")
    presets = sorted((ROOT / "params").glob(f"{name}.*.yaml"))
    kinds = {p.name.split(".")[1] for p in presets}
    assert {"smoke", "cpu", "paper"} <= kinds
    for path in presets:
        given = yaml.safe_load(path.read_text())
        p = params.validate({**defaults, **given})
        assert p["experiment"] == name, path


def test_a_misspelled_preset_key_is_rejected():
    defaults = notebooks.parameters(ROOT / "notebooks" / "ns_regression.ipynb")
    with pytest.raises(params.ParamError, match="epoch"):
        params.validate({**defaults, "epoch": 3})


# --------------------------------------------------------------------------- per-cycle table


def _frame(curves: dict[str, list[list[float]]], metric: str = "accuracy", step: int = 20) -> pd.DataFrame:
    """Tidy rows from {strategy: [[value per cycle] per seed]}."""
    rows = []
    for strategy, seeds in curves.items():
        for seed, values in enumerate(seeds):
            for cycle, v in enumerate(values):
                rows.append(dict(experiment="t", run_id="r", dataset="d", model="m", strategy=strategy,
                                 seed=seed, cycle=cycle, n_labeled=step * (cycle + 1), metric=metric,
                                 value=v))
    return pd.DataFrame(rows, columns=COLUMNS)



def test_per_cycle_comparison_matches_a_hand_computation():
    frame = _frame({"noise_stability": [[0.5, 0.70, 0.80, 0.90], [0.5, 0.72, 0.78, 0.92]],
                    "random": [[0.5, 0.60, 0.85, 0.88], [0.5, 0.64, 0.83, 0.90]],
                    "entropy": [[0.5, 0.69, 0.70, 0.70], [0.5, 0.69, 0.70, 0.70]]})
    comp = ns_main.per_cycle_comparison(frame).set_index("cycle")
    # cycle 1: NS mean 0.71, best other entropy 0.69 -> gap +0.02
    assert comp.loc[1, "best_other"] == "entropy"
    assert comp.loc[1, "gap"] == pytest.approx(0.02)
    # cycle 2: NS 0.79, best random 0.84 -> gap -0.05
    assert comp.loc[2, "best_other"] == "random"
    assert comp.loc[2, "gap"] == pytest.approx(-0.05) and not comp.loc[2, "best"]
    assert comp.loc[2, "best_std"] == pytest.approx(np.std([0.85, 0.83], ddof=1))
    assert comp.loc[3, "best"] and comp.loc[3, "gap"] == pytest.approx(0.91 - 0.89)
    assert "tol" not in comp and "comparable" not in comp  # descriptive: no verdict rule in the table


def test_per_cycle_comparison_orients_mae_and_rejects_a_missing_strategy():
    frame = _frame({"noise_stability": [[30e3, 25e3]] * 2, "random": [[30e3, 27e3]] * 2}, metric="mae")
    comp = ns_main.per_cycle_comparison(frame).set_index("cycle")
    assert comp.loc[1, "gap"] == pytest.approx(2e3) and comp.loc[1, "best"]  # lower MAE is better
    with pytest.raises(ValueError, match="'zz' not in the results"):
        ns_main.per_cycle_comparison(frame, "zz")


def test_report_builder_draws_from_a_run_folder(tmp_path):
    frame = _frame({"noise_stability": [[0.5, 0.8]] * 2, "random": [[0.5, 0.7]] * 2})
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"dataset": "d", "model": "m", "budget": 20}))
    figs = ns_main.ns_figures(tmp_path)
    assert list(figs) == ["learning_curve"]
    assert len(figs["learning_curve"].axes[0].lines) >= 2


def test_classification_report_adds_the_penalty_matrix(tmp_path):
    frame = _frame({"noise_stability": [[0.5, 0.80, 0.90], [0.5, 0.82, 0.91], [0.5, 0.79, 0.93]],
                    "random": [[0.5, 0.70, 0.90], [0.5, 0.71, 0.92], [0.5, 0.72, 0.92]]})
    frame["experiment"] = "ns_classification"
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"dataset": "d", "model": "m", "budget": 20}))
    figs = ns_main.ns_figures(tmp_path)
    assert list(figs) == ["learning_curve", "penalty_matrix"]
    cells = [t.get_text() for t in figs["penalty_matrix"].axes[0].texts]  # row-major 2 x 2
    # NS wins only the second checkpoint (random stops the checkpoints once it reaches 99% of
    # its final 0.913: at the third); 1 win / 2 checkpoints
    assert cells == ["0.00", "0.50", "0.00", "0.00"]


# --------------------------------------------------------------------------- text data


MRPC_TRAIN = (
    "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    "1\t702876\t702977\tAmrozi accused his brother , whom he called \" the witness \" , of lying .\t"
    "Referring to him as only \" the witness \" , Amrozi accused his brother of lying .\n"
    "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 .\t"
    "Yucaipa bought Dominick 's in 1995 for $ 693 million .\n"
    "1\t1330381\t1330521\tThey had published an advertisement on the Internet on June 10 .\t"
    "On June 10 , the ship 's owners had published an advertisement on the Internet .\n"
)
MRPC_TEST = (
    "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    "0\t1089874\t1089925\tPCCW 's chief operating officer will also head the unit .\t"
    "The former chief operating officer also headed PCCW .\n"
    "1\t3019446\t3019327\tThe world 's two largest automakers said their sales declined .\t"
    "The two largest automakers reported lower sales .\n"
)


def test_read_mrpc_tsv_parses_the_official_format(tmp_path):
    from alstudy import text

    path = tmp_path / "msr_paraphrase_train.txt"
    path.write_text(MRPC_TRAIN, encoding="utf-8")
    labels, first, second = text.read_mrpc_tsv(path)
    assert labels == [1, 0, 1]
    assert first[0] == 'Amrozi accused his brother , whom he called " the witness " , of lying .'
    assert second[1] == "Yucaipa bought Dominick 's in 1995 for $ 693 million ."
    bad = tmp_path / "bad.txt"
    bad.write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n2\ta\tb\tc\td\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        text.read_mrpc_tsv(bad)


def test_mrpc_loads_through_the_registry(tmp_path):
    folder = tmp_path / "mrpc"
    folder.mkdir()
    (folder / "msr_paraphrase_train.txt").write_text(MRPC_TRAIN, encoding="utf-8")
    (folder / "msr_paraphrase_test.txt").write_text(MRPC_TEST, encoding="utf-8")
    ds = data.load("mrpc", root=tmp_path)
    assert ds.x_train.shape[:2] == (3, 3) and ds.x_test.shape[:2] == (2, 3)
    assert ds.y_train.tolist() == [1, 0, 1] and ds.y_test.tolist() == [0, 1]
    assert ds.x_train.dtype == torch.int64 and ds.num_classes == 2
    with pytest.raises(data.DatasetUnavailable, match="msr_paraphrase_train.txt"):
        data.load("mrpc", root=tmp_path / "missing")


WORDNET_NOUN = (
    "  1 This software and database is being provided to you, the LICENSEE, by\n"
    "00000001 05 n 02 bank 0 depository_financial_institution 0 000 | a financial institution "
    "that accepts deposits; \"he cashed a check at the bank\"; \"that bank holds the mortgage\"\n"
    "00000002 17 n 01 bank 1 000 | sloping land beside a body of water; \"they pulled the canoe up on the bank\"\n"
    "00000003 06 n 01 canoe 0 000 | small and light boat; pointed at both ends\n"
    "00000004 05 n 01 depository_financial_institution 0 000 | a bank in name only; \"a depository "
    "financial institution was opened\"\n"
)


def test_wordnet_parser_and_pairs_on_a_file_in_wordnet_format(tmp_path):
    from alstudy import text

    (tmp_path / "data.noun").write_text(WORDNET_NOUN, encoding="latin-1")
    syn = text.wordnet_synsets(tmp_path)
    assert [s[0] for s in syn] == ["n00000001", "n00000002", "n00000003", "n00000004"]
    assert syn[0][1] == ["bank", "depository financial institution"]
    assert syn[0][2] == "a financial institution that accepts deposits"
    assert syn[0][3] == ["he cashed a check at the bank", "that bank holds the mortgage"]
    assert syn[2][3] == [] and syn[2][2] == "small and light boat; pointed at both ends"
    pairs = text.wordnet_gloss_pairs(syn, seed=0)
    by_id = {s[0]: s for s in syn}
    examples_of = {s[2]: set(s[3]) for s in syn}
    # reference: every synset with an example and a lemma shared with another such synset
    expected_ids = {"n00000001", "n00000002", "n00000004"}
    assert {p[3] for p in pairs} == expected_ids and len(pairs) == 2 * len(expected_ids)
    for definition, example, label, sid in pairs:
        assert definition == by_id[sid][2]
        assert (example in examples_of[definition]) == (label == 1)
        if label == 0:  # the example illustrates another sense of a shared word
            owner = next(s for s in syn if example in s[3])
            assert owner[0] != sid and set(owner[1]) & set(by_id[sid][1])
    assert sum(p[2] for p in pairs) == len(pairs) // 2


# --------------------------------------------------------------------------- text model


def test_tokenize_pairs_layout():
    from alstudy import text

    x = text.tokenize_pairs(["a cat sat", "dogs"], ["on the mat", "bark loudly at night"], max_len=16)
    assert x.shape[:2] == (2, 3) and x.dtype == torch.int64
    ids, mask, types = x[:, 0], x[:, 1], x[:, 2]
    for i in range(2):
        n = int(mask[i].sum())
        seq, tt = ids[i, :n].tolist(), types[i, :n].tolist()
        assert seq[0] == 101 and seq[-1] == 102 and seq.count(102) == 2  # [CLS] s1 [SEP] s2 [SEP]
        sep = seq.index(102)
        assert tt == [0] * (sep + 1) + [1] * (n - sep - 1)
        assert ids[i, n:].eq(0).all()


def test_text_pair_model_mean_pools_real_tokens_only():
    torch.manual_seed(0)
    model = models.build("text_pair", (3, 12), 2, layers=1, pretrained=False).eval()
    assert isinstance(model, models.ALModel)
    assert set(models.feature_parameters(model)) and all(
        n.startswith("encoder.") for n in models.feature_parameters(model))
    ids = torch.randint(1000, 2000, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    ids[1, 7:] = 0
    types = torch.zeros(2, 12, dtype=torch.long)
    x = torch.stack([ids, mask, types], 1)  # [2, 3, 12]
    with torch.no_grad():
        z = model.features(x)  # [2, 384]
        hidden = model.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        ref = torch.stack([torch.stack([hidden[b, t] for t in range(12) if mask[b, t]]).mean(0)
                           for b in range(2)])
        # padding must not change the pooled feature: the second pair alone, unpadded
        alone = model.features(x[1:, :, :7])
        out = model(x)
    assert z.shape == (2, model.feature_dim) and out.shape == (2, 2)
    torch.testing.assert_close(z, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone[0], z[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, model.head(z))


def test_text_pair_model_rejects_bad_options():
    with pytest.raises(ValueError, match="'layers' = 9"):
        models.build("text_pair", (3, 8), 2, layers=9, pretrained=False)
    with pytest.raises(ValueError, match=r"inputs \[N, 3, L\]"):
        models.build("text_pair", (1, 28, 28), 2, pretrained=False)


def test_wordnet_other_word_negatives_share_no_lemma(tmp_path):
    from alstudy import text

    (tmp_path / "data.noun").write_text(WORDNET_NOUN, encoding="latin-1")
    syn = text.wordnet_synsets(tmp_path)
    by_id = {s[0]: s for s in syn}
    pairs = text.wordnet_gloss_pairs(syn, seed=0, negatives="other_word")
    assert pairs and sum(p[2] for p in pairs) == len(pairs) // 2
    for definition, example, label, sid in pairs:
        owner = next(s for s in syn if example in s[3])
        if label == 1:
            assert owner[0] == sid
        else:  # an example of a synset with no lemma in common with the definition's
            assert not set(owner[1]) & set(by_id[sid][1])
    with pytest.raises(ValueError, match="negatives.*allowed: \\['same_word', 'other_word'\\]"):
        text.wordnet_gloss_pairs(syn, seed=0, negatives="random")
    from alstudy import data  # the lazily imported loader's options are data options

    assert data.loader_options("wordnet_pairs")["negatives"] == "same_word"
