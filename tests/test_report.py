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
