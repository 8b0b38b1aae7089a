"""Wall time of the 6-unit smoke grid on Dask with 1 vs 2 workers (and the local pool).

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

import yaml

from alstudy import batch

GRID = {
    "experiment": "bench_batch",
    "params": dict(dataset="digits", model_options={"width": 8}, initial_size=10, budget=10, cycles=2,
                   epochs=10, max_train=600, max_test=200),
    "grid": {"strategies": [["random"], ["entropy"]], "seeds": [[0], [1], [2]]},
}


def timed(spec: Path, backend: str, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as results:
        t0 = time.perf_counter()
        _, outcomes = batch.run_batch(spec, jobs=jobs, backend=backend, results_dir=results, progress=False)
        seconds = time.perf_counter() - t0
    assert len(outcomes) == 6 and all(o["ok"] for o in outcomes), outcomes
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "smoke.yaml"
        spec.write_text(yaml.safe_dump(GRID))
        rows = {
            "dask_1_worker_s": timed(spec, "dask", 1),
            "dask_2_workers_s": timed(spec, "dask", 2),
            "local_1_job_s": timed(spec, "local", 1),
            "local_2_jobs_s": timed(spec, "local", 2),
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
