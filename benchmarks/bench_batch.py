"""Wall time of the 6-unit smoke grid (params/batch/quickstart.smoke.yaml) on Dask with 1 vs 2
workers, and on the local process pool with 1 vs 2 jobs.

Run: ``.venv/bin/python benchmarks/bench_batch.py``. Writes benchmarks/results/batch.json.
On a machine with C cores, 2 workers get C // 2 threads each, so the ratio measures how well
independent units parallelise, not thread-level speed-up.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from alstudy import batch

SPEC = Path(__file__).resolve().parents[1] / "params" / "batch" / "quickstart.smoke.yaml"


def timed(spec: Path, backend: str, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as results:
        t0 = time.perf_counter()
        _, outcomes = batch.run_batch(spec, jobs=jobs, backend=backend, results_dir=results, progress=False)
        seconds = time.perf_counter() - t0
    assert len(outcomes) == 6 and all(o["ok"] for o in outcomes), outcomes
    return seconds


def main() -> None:
    from alstudy import data

    data.load("digits")  # import scikit-learn and read the data once, outside every timing
    rows = {
        "dask_1_worker_s": timed(SPEC, "dask", 1),
        "dask_2_workers_s": timed(SPEC, "dask", 2),
        "local_1_job_s": timed(SPEC, "local", 1),
        "local_2_jobs_s": timed(SPEC, "local", 2),
    }
    rows["dask_speedup_2_vs_1"] = rows["dask_1_worker_s"] / rows["dask_2_workers_s"]
    rows["local_speedup_2_vs_1"] = rows["local_1_job_s"] / rows["local_2_jobs_s"]
    rows["cores"] = os.cpu_count()
    rows["load_average_1min"] = os.getloadavg()[0]
    out = Path(__file__).parent / "results" / "batch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    for key, value in rows.items():
        print(f"{key:24s} {value:.3f}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
