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
