"""Parameter validation: every mistake fails before any work, naming the key and the range."""

import pytest

from alstudy import loop, params
from alstudy.params import ParamError


def test_defaults_validate():
    p = params.validate()
    assert p["dataset"] == "mnist" and p["strategies"] == ["random", "entropy"]


@pytest.mark.parametrize("given,match", [
    ({"epcohs": 3}, r"'epcohs' \(did you mean 'epochs'\?\)"),
    ({"epochs": -1}, r"'epochs' = -1 .*integer >= 1"),
    ({"epochs": "ten"}, r"'epochs' = 'ten' has type str"),
    ({"epochs": True}, r"'epochs' = True has type bool"),
    ({"lr": 0}, r"'lr' = 0 is invalid; allowed: number > 0"),
    ({"dataset": "mnits"}, r"'dataset' = 'mnits' is invalid"),
    ({"model": "resnet50"}, r"'model' = 'resnet50' is invalid"),
    ({"strategies": ["random", "entorpy"]}, r"unknown strategy 'entorpy'"),
    ({"strategies": []}, r"'strategies' = \[\] is invalid"),
    ({"strategy_options": {"entropy": {"batch_sise": 3}}}, r"unknown option.*batch_sise"),
    ({"seeds": [0, 0]}, r"'seeds'"),
    ({"candidates": 5, "budget": 10}, r"'candidates' = 5 is smaller than 'budget' = 10"),
    ({"candidates": "some"}, r"'candidates' = 'some' is invalid"),
    ({"optimizer": "adamw"}, r"one of \['adam', 'sgd', 'sam', 'asam'\]"),
    ({"lr_milestones": [100]}, r"beyond 'epochs'"),
    ({"model_options": {"widht": 3}}, r"unknown option\(s\) \['widht'\] for model 'small_cnn'"),
])
def test_bad_values_name_key_and_range(given, match):
    with pytest.raises(ParamError, match=match):
        params.validate(given)


def test_budget_larger_than_pool_fails_before_training(tmp_path):
    with pytest.raises(ParamError, match=r"'budget' = 2000 .* pool has 1257"):
        loop.run(dataset="digits", budget=2000, cycles=1, results_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing written


def test_task_mismatch_is_reported(tmp_path):
    with pytest.raises(ParamError, match="regression"):
        loop.run(dataset="ames", model="mlp", strategies=["entropy"], initial_mode="random",
                 results_dir=str(tmp_path))
    with pytest.raises(ParamError, match="classification model"):
        loop.run(dataset="ames", model="small_cnn", strategies=["random"], initial_mode="random",
                 results_dir=str(tmp_path))


def test_strategy_mapping_form_and_run_id():
    p = params.validate(strategies={"ent": {"strategy": "entropy", "batch_size": 64}, "random": {}})
    assert params.strategy_specs(p) == {"ent": ("entropy", {"batch_size": 64}), "random": ("random", {})}
    q = params.validate(strategies={"ent": {"strategy": "entropy", "batch_size": 32}, "random": {}})
    assert params.run_id(p) != params.run_id(q)
    assert params.run_id(p) == params.run_id(params.validate(p, progress=False, seeds=[5]))


def test_load_yaml_presets(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("dataset: digits\nbudgte: 3\n")
    with pytest.raises(ParamError, match=r"x.yaml: unknown parameter.*'budgte' \(did you mean 'budget'\?\)"):
        params.load(f)
    f.write_text("dataset: digits\nbudget: 3\n")
    assert params.load(f, cycles=2)["cycles"] == 2


def test_collect_from_a_notebook_namespace():
    before = {"x"}
    ns = {"x": 1, "_hidden": 2, "epochs": 3, "In": [], "params": params, "typo_key": 1}
    got = params.collect(ns, before)
    assert got == {"epochs": 3, "typo_key": 1}
    with pytest.raises(ParamError, match="typo_key"):
        params.validate(got)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("text,match", [
    ("dataset: [digits\nbudget: 3\n", r"x\.yaml' is not valid YAML: line \d+, column \d+"),
    ("", r"x\.yaml' is empty"),
    ("# only a comment\n", r"x\.yaml' is empty"),
    ("dataset: digits\nbudget: 3\nbudget: 5\n", r"duplicate key 'budget' \(first given on line 2\)"),
    ("strategies:\n  a: {strategy: entropy, batch_size: 1, batch_size: 2}\n", r"duplicate key 'batch_size'"),
    ("- dataset\n- digits\n", r"must hold a mapping of key: value, not a list"),
])
def test_bad_yaml_files_name_the_file(tmp_path, text, match):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(ParamError, match=match) as info:
        params.load(f)
    assert "<unicode string>" not in str(info.value) and "\n" not in str(info.value)


def test_a_folder_or_a_missing_file_as_params_file(tmp_path):
    with pytest.raises(ParamError, match="is a folder"):
        params.load(tmp_path)
    with pytest.raises(ParamError, match="does not exist"):
        params.load(tmp_path / "nope.yaml")


def test_exponent_floats_and_numeric_strings_are_numbers(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("dataset: digits\nlr: 1e-3\nweight_decay: 5E-4\n"
                 "strategies:\n  ns: {strategy: noise_stability, zeta: 1e-6}\n")
    p = params.load(f)
    assert p["lr"] == 0.001 and p["weight_decay"] == 0.0005
    assert params.strategy_specs(p)["ns"] == ("noise_stability", {"zeta": 1e-6})
    assert params.validate(lr="1e-3")["lr"] == 0.001  # e.g. papermill -r or a notebook string
    assert params.parse_value("lr", "1e-3") == 0.001 and params.parse_value("epochs", "5") == 5
    with pytest.raises(ParamError, match="'lr' = 'fast' has type str"):
        params.validate(lr="fast")


def test_numpy_scalars_are_accepted_as_plain_numbers():
    import numpy as np

    p = params.validate(seeds=[np.int64(0), np.int64(3)], epochs=np.int64(2), lr=np.float32(0.01))
    assert p["seeds"] == [0, 3] and type(p["seeds"][0]) is int and type(p["epochs"]) is int
    assert params.run_id(p) == params.run_id(params.validate(seeds=[0, 3], epochs=2, lr=p["lr"]))


@pytest.mark.parametrize("given,match", [
    ({"lr": float("inf")}, r"'lr' = inf is not a finite number"),
    ({"sam_rho": float("inf")}, r"'sam_rho' = inf is not a finite number"),
    ({"weight_decay": float("nan")}, r"'weight_decay' = nan is not a finite number"),
    ({"device": "cuda:abc"}, r"'device' = 'cuda:abc' is invalid"),
    ({"device": "gpu"}, r"'device' = 'gpu' is invalid"),
    ({"strategies": ["random"], "strategy_options": {"entropy": {"batch_size": 8}}},
     r"'strategy_options' sets options of \['entropy'\], which is not run"),
    ({"dataset": "mnits"}, r"'dataset' = 'mnits' is invalid \(did you mean 'mnist'\?\); allowed: one of \[.*'cifar10'"),
    ({"model": "resnet"}, r"'model' = 'resnet' is invalid \(did you mean 'resnet18'\?\); allowed: one of \[.*'small_cnn'"),
])
def test_values_that_used_to_pass_or_crash(given, match):
    with pytest.raises(ParamError, match=match):
        params.validate(given)


def test_valid_device_names_pass_validation():
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert params.validate(device=device)["device"] == device


def test_params_must_be_a_mapping(tmp_path):
    with pytest.raises(ParamError, match="must be a mapping of key: value, not a list"):
        loop.run([1, 2])
    with pytest.raises(ParamError, match="not a str"):
        params.validate("dataset: digits")


def test_cuda_device_on_a_machine_without_it_is_a_param_error(monkeypatch):
    import torch

    from alstudy.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamError, match=r"'device' = 'cuda'.*use 'auto' or 'cpu'"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ParamError, match=r"'device' = 'cuda:3'.*1 CUDA device.*'cuda:0'"):
        resolve_device("cuda:3")


def test_mc_dropout_without_dropout_fails_before_any_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the model")

    monkeypatch.setattr(loop, "fit", no_training)
    with pytest.raises(ParamError, match=r"\['bald'\] need a model with dropout.*dropout: 0.5"):
        loop.run(dataset="digits", model="small_cnn", strategies=["random", "bald"], max_train=100,
                 initial_size=10, budget=5, cycles=1, results_dir=str(tmp_path), progress=False)
    assert not any(tmp_path.iterdir())  # nothing written
