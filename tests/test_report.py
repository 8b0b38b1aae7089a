"""The README's reproduction section is generated: from the registry and the stored verdicts only."""

import json
from pathlib import Path

from alstudy.evidence import report
from alstudy.evidence.claims import load_claims

ROOT = Path(__file__).resolve().parents[1]


def test_readme_section_is_what_alstudy_report_writes():
    assert not report.update_readme(ROOT / "README.md", ROOT / "results", check=True), (
        "README.md differs from the registry and results: run `alstudy report`")


def _record(claim, verdict, written, applies=True, **kw):
    base = {"claim": claim, "applies": applies, "verdict": verdict, "written": written, "headline": "a vs b",
            "diff": 0.01, "ci_low": -0.02, "ci_high": 0.04, "n": 5, "margin": None, "mde": 0.03,
            "run_setting": "mnist, 5 seed(s)", "reason": ""}
    return {**base, **kw}


def test_newest_applying_record_wins_and_other_presets_never_count(tmp_path):
    run_a, run_b = tmp_path / "x" / "a", tmp_path / "x" / "b"
    run_a.mkdir(parents=True)
    run_b.mkdir(parents=True)
    (run_a / "verdict.json").write_text(json.dumps({"records": [
        _record("c.one", "inconclusive", "2026-01-01T00:00:00"),
        _record("c.two", "reproduced", "2026-01-03T00:00:00", applies=False)]}))
    (run_b / "verdict.json").write_text(json.dumps({"records": [
        _record("c.one", "contradicted", "2026-01-02T00:00:00")]}))
    best = report.newest_verdicts(tmp_path)
    assert best["c.one"]["verdict"] == "contradicted"
    assert "c.two" not in best  # a run of another preset is shown in its notebook, never here


def test_section_lists_every_claim_with_its_exact_quote_and_summaries_combine_parts(tmp_path):
    claims = load_claims()
    covered = next(c for c in claims if c.kind == "summary")
    part = covered.covered_by[0]
    run = tmp_path / "e" / "r"
    run.mkdir(parents=True)
    (run / "verdict.json").write_text(json.dumps({"records": [
        _record(part, "contradicted", "2026-01-01T00:00:00")]}))
    text = report.reproduction_section(tmp_path, claims)
    for c in claims:
        assert f"`{c.id}`" in text
        assert " ".join(c.quote.split()).replace("|", "\\|") in text
    row = next(line for line in text.splitlines() if f"`{covered.id}`" in line)
    assert "**contradicted** (a part is)" in row
    not_run = next(c for c in claims if c.not_run)
    row = next(line for line in text.splitlines() if f"`{not_run.id}`" in line)
    assert "not run here" in row


def test_runs_table_counts_seeds_with_every_strategy_and_unit_hours(tmp_path):
    import json

    import pandas as pd

    from alstudy.evidence.report import runs_table

    run = tmp_path / "ns_regression" / "r"
    (run / "units").mkdir(parents=True)
    rows = [{"strategy": s, "seed": seed} for seed in (0, 1) for s in ("noise_stability", "random", "coreset")]
    rows += [{"strategy": s, "seed": 2} for s in ("noise_stability", "random")]  # seed 2 unfinished
    pd.DataFrame(rows).to_csv(run / "metrics.csv", index=False)
    for stem, seconds, threads in (("random__seed0", 3600, 1), ("coreset__seed0", 900, 2)):
        (run / "units" / f"{stem}.json").write_text(json.dumps({"seconds": seconds, "threads": threads}))
        (run / "units" / f"{stem}.csv").write_text("")
    (run / "units" / "random__seed1.json").write_text(json.dumps({"seconds": 99}))  # in flight: no csv
    rec = {"run": str(run), "notebook": "ns_regression", "preset": "cpu"}  # the cpu preset: 50 seeds, 3 arms
    row = [line for line in runs_table([rec, dict(rec)]) if line.startswith(f"| `{run}`")]
    assert row == [f"| `{run}` | `ns_regression`, `cpu` | 2 of 50 | 2 | 1.50 | **no** |"]
    # a unit copied from another run folder is counted, its time is not (it ran there)
    (run / "units" / "random__seed1.json").write_text(
        json.dumps({"seconds": 1800, "threads": 1, "copied_from": "results/x/y/units/r.csv"}))
    (run / "units" / "random__seed1.csv").write_text("")
    row = [line for line in runs_table([rec]) if line.startswith(f"| `{run}`")]
    assert row == [f"| `{run}` | `ns_regression`, `cpu` | 2 of 50 | 3 (1 copied) | 1.50 | **no** |"]
    # the total row sums the units run in each folder and their hours, once per run folder
    other = tmp_path / "ns_regression" / "s"
    (other / "units").mkdir(parents=True)
    (other / "units" / "random__seed0.json").write_text(json.dumps({"seconds": 7200, "threads": 1}))
    (other / "units" / "random__seed0.csv").write_text("")
    total = runs_table([rec, {**rec, "run": str(other)}])[-2]
    assert total == "| **all 2 runs** | | | 3 run here | 3.50 | 0 complete |"


def test_runs_table_lists_the_sibling_runs_a_claim_joined(tmp_path):
    import pandas as pd
    import yaml

    from alstudy.evidence import claims, verdicts
    from alstudy.evidence.report import runs_table

    claim = claims.claim("saal.table1.fashion.advantage_larger_with_adam")   # Adam vs SAM runs
    folders = {}
    for opt in ("adam", "sam", "sgd"):
        folders[opt] = tmp_path / "saal_table1" / f"r-{opt}"
        folders[opt].mkdir(parents=True)
        lr = 0.1 if opt == "sgd" else 1e-3                                   # sgd: not a sibling
        (folders[opt] / "params.yaml").write_text(yaml.safe_dump({"optimizer": opt, "lr": lr}))
        pd.DataFrame([{"strategy": "random", "seed": 0}]).to_csv(folders[opt] / "metrics.csv", index=False)
    assert verdicts.frame_runs(folders["adam"], claim) == [folders["adam"], folders["sam"]]
    rec = {"run": str(folders["adam"]), "runs": (str(folders["adam"]), str(folders["sam"])),
           "notebook": "saal_table1", "preset": "cpu"}
    listed = [line.split("|")[1].strip() for line in runs_table([rec]) if line.startswith("| `")]
    assert listed == [f"`{folders['adam']}`", f"`{folders['sam']}`"]


def test_changes_table_pairs_a_claim_with_its_earlier_smaller_runs(tmp_path):
    import json

    from alstudy.evidence.report import changes_table

    def write(run, records):
        folder = tmp_path / "x" / run
        folder.mkdir(parents=True)
        (folder / "verdict.json").write_text(json.dumps({"records": records}))

    new = {"claim": "c1", "run": "results/x/big", "verdict": "contradicted", "n": 24, "applies": True}
    write("big", [new, {"claim": "c2", "run": "results/x/big", "verdict": "reproduced", "n": 5}])
    write("small", [{"claim": "c1", "run": "results/x/small", "verdict": "inconclusive", "n": 3,
                     "applies": False, "run_setting": "3 seed(s)"},
                    {"claim": "c2", "run": "results/x/small", "verdict": "reproduced", "n": 9}])  # larger n: not earlier
    lines = changes_table({"c1": new, "c2": {"claim": "c2", "run": "results/x/big", "verdict": "reproduced", "n": 5}},
                          tmp_path)
    rows = [line for line in lines if line.startswith("| `")]
    assert rows == ["| `c1` | inconclusive (n = 3; 3 seed(s)) | contradicted (n = 24) | **moved** |"]


def test_verdict_markdown_names_every_run_folder_a_claim_joined():
    from alstudy.evidence.verdicts import render_markdown

    base = {**_record("c.one", "inconclusive", "2026-01-01T00:00:00"), "extension": False, "quote": "q",
            "where": "w", "p": None, "test": "paired t", "setting": "s", "run": "results/e/sam"}
    alone, joined = render_markdown([base]), render_markdown([{**base, "runs": ("results/e/adam", "results/e/sam")}])
    assert "joined" not in alone
    assert "* run: `results/e/sam` (mnist, 5 seed(s)); joined with `results/e/adam`; claim's setting: s" in joined


def test_a_verdict_held_back_by_its_gate_says_why_in_the_table(tmp_path):
    claims = load_claims()
    gated = next(c for c in claims if c.gate is not None and c.not_run is None)
    run = tmp_path / "e" / "r"
    run.mkdir(parents=True)
    why = "gate not passed (final accuracy: mean 0.51 (needs ≥ 0.55), verdict contradicted); the comparison alone: reproduced"
    (run / "verdict.json").write_text(json.dumps({"records": [
        _record(gated.id, "inconclusive", "2026-01-01T00:00:00", reason=why)]}))
    text = report.reproduction_section(tmp_path, claims)
    row = next(line for line in text.splitlines() if f"`{gated.id}`" in line)
    assert row.endswith(f"| **inconclusive**: {why} |")
    counts = text.splitlines()[0]
    assert " 1 inconclusive" in counts and "contradicted" not in counts  # counted once, by its verdict
