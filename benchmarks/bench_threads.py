"""Torch threads 1 vs 2 for the small CNN, with and without a competing busy process.

Run: ``.venv/bin/python benchmarks/bench_threads.py``. Writes benchmarks/results/threads.json.

Workload: one Adam training step (forward, backward, update) of the NoiseStability small CNN
(its Table 1) on a fixed batch of 96 MNIST-sized inputs, and one small end-to-end AL run
(``loop.run`` on ``digits``, 4 units of 2 rounds). "busy" runs a second process that spins on one core for
the whole measurement, as another job on a shared machine would. The four conditions are
interleaved within every repeat (so slow drift of the machine hits them alike), the warm-up
steps are discarded, and each number is the median over repeats of a block's median step time.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from alstudy import loop, models

WARMUP, STEPS, REPEATS = 5, 15, 5
CONDITIONS = [(1, False), (2, False), (1, True), (2, True)]  # (threads, competing process)
RUN = dict(dataset="digits", model="small_cnn", strategies=["random", "entropy"], seeds=[0, 1],
           initial_size=20, budget=20, cycles=1, epochs=3, batch_size=32, max_train=600,
           max_test=300, progress=False)


def _spin() -> None:  # pragma: no cover - runs in the competing process
    while True:
        pass


class Busy:
    """A process that keeps one core busy while the block runs (or nothing when off)."""

    def __init__(self, on: bool):
        self.proc = mp.get_context("spawn").Process(target=_spin, daemon=True) if on else None

    def __enter__(self):
        if self.proc is not None:
            self.proc.start()
            time.sleep(0.2)  # let it reach its loop
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()


def step_block(model, opt, x, y, threads: int, busy: bool) -> float:
    """Median seconds of one training step over ``STEPS`` steps (after ``WARMUP`` discarded)."""
    torch.set_num_threads(threads)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    with Busy(busy):
        for i in range(WARMUP + STEPS):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            if i >= WARMUP:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_block(threads: int, busy: bool) -> float:
    """Seconds of one small end-to-end AL run (4 units) in a fresh results folder."""
    with tempfile.TemporaryDirectory() as results, Busy(busy):
        t0 = time.perf_counter()
        loop.run(RUN, results_dir=results, threads=threads)
        return time.perf_counter() - t0


def main() -> None:
    torch.manual_seed(0)
    model = models.build("small_cnn", (1, 28, 28), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(96, 1, 28, 28), torch.randint(0, 10, (96,))
    load_before = os.getloadavg()[0]
    steps = {c: [] for c in CONDITIONS}
    runs = {c: [] for c in CONDITIONS}
    run_block(1, False)  # warm-up: imports, data loading
    for _ in range(REPEATS):
        for c in CONDITIONS:
            steps[c].append(step_block(model, opt, x, y, *c))
        for c in CONDITIONS:
            if len(runs[c]) < 3:  # 3 repeats of the slower end-to-end run
                runs[c].append(run_block(*c))
    name = lambda t, b: f"threads{t}_{'busy' if b else 'quiet'}"
    med = {name(*c): statistics.median(v) for c, v in steps.items()}
    run_med = {name(*c): statistics.median(v) for c, v in runs.items()}
    rows = {
        "step_ms": {k: v * 1e3 for k, v in med.items()},
        "step_ms_all_repeats": {name(*c): [t * 1e3 for t in v] for c, v in steps.items()},
        "run_s": run_med,
        "run_s_all_repeats": {name(*c): v for c, v in runs.items()},
        "ratios": {
            "step_2_vs_1_quiet": med["threads2_quiet"] / med["threads1_quiet"],
            "step_2_vs_1_busy": med["threads2_busy"] / med["threads1_busy"],
            "step_busy_vs_quiet_1_thread": med["threads1_busy"] / med["threads1_quiet"],
            "step_busy_vs_quiet_2_threads": med["threads2_busy"] / med["threads2_quiet"],
            "run_2_vs_1_quiet": run_med["threads2_quiet"] / run_med["threads1_quiet"],
            "run_2_vs_1_busy": run_med["threads2_busy"] / run_med["threads1_busy"],
        },
        "warmup_steps": WARMUP, "steps_per_block": STEPS, "repeats": REPEATS,
        "cores": os.cpu_count(),
        "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
    }
    out = Path(__file__).parent / "results" / "threads.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    for key in ("step_ms", "run_s", "ratios"):
        for k, v in rows[key].items():
            print(f"{key:8s} {k:30s} {v:9.3f}")
    print(f"cores {rows['cores']}, load average {load_before:.2f} -> {rows['load_average_1min_after']:.2f}")


if __name__ == "__main__":
    main()
