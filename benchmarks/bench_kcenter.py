"""Time and peak memory of alstudy.selection.kcenter_greedy (CPU, float32).

Each measurement runs in a fresh Python process. Extra peak memory of a run is
``ru_maxrss`` (peak RSS, after the run) minus the current RSS just before it
(after X has been allocated), so it counts what the selection itself
allocated on top of the data; it is compared with the size of X (N*D*4 bytes)
and with the N x N float32 matrix a naive implementation would build.

Cases:
  * incremental, N=60000, D=300, budget=1000, origin start;
  * incremental, same, with 5000 pre-existing centres (chunked initialisation);
  * incremental vs naive (full N x N distance matrix, then farthest-first over
    its rows) at N=5000 (the naive version is infeasible at N=60000: 14.4 GB).

Usage: .venv/bin/python benchmarks/bench_kcenter.py [--threads T]
Writes benchmarks/results/kcenter.json. Timings of the incremental loop (1000
small parallel regions) are very sensitive to other load on the CPU cores:
the 1-minute load average before each row is recorded; on a shared machine
``--threads 1`` gives steadier numbers.
"""

import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SEED = 0


def _rss_bytes():
    """Current resident set size of this process in bytes."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux fallback
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB


def naive_kcenter(X, budget):
    """Reference farthest-first over a full [N, N] distance matrix."""
    import torch

    D = torch.cdist(X, X)  # [N, N]
    min_d = X.norm(dim=1)  # [N], origin start
    picks = []
    for _ in range(budget):
        i = int(torch.argmax(min_d))
        picks.append(i)
        torch.minimum(min_d, D[i], out=min_d)
        min_d[i] = -float("inf")
    return torch.tensor(picks)


def worker(kind, n, d, budget, n_centers, threads):
    """Run one measurement in this (fresh) process and print a JSON line."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from alstudy.selection import kcenter_greedy

    g = torch.Generator().manual_seed(SEED)
    X = torch.randn(n, d, generator=g, dtype=torch.float32)  # [N, D]
    C = torch.randn(n_centers, d, generator=g, dtype=torch.float32) if n_centers else None
    # warm-up on a tiny problem (loads kernels, thread pool) outside the measurement
    kcenter_greedy(X[:100], 5)
    naive_kcenter(X[:100], 5)
    load_before = os.getloadavg()[0]
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    if kind == "incremental":
        picks = kcenter_greedy(X, budget, centers=C)
    else:
        picks = naive_kcenter(X, budget)
    secs = time.perf_counter() - t0
    extra = max(0, _maxrss_bytes() - rss0)
    print(json.dumps({
        "kind": kind, "N": n, "D": d, "budget": budget, "n_centers": n_centers,
        "seconds": secs, "extra_peak_bytes": extra, "rss_before_bytes": rss0,
        "picks_head": picks[:10].tolist(), "picks": picks.tolist() if n <= 5000 else None,
        "threads": torch.get_num_threads(), "loadavg_1min_before": load_before,
    }))


def run(kind, n, d, budget, n_centers=0, threads=0):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", kind, str(n), str(d), str(budget),
         str(n_centers), str(threads)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(threads=0):
    mib = 2**20
    rows = []
    big = dict(n=60000, d=300, budget=1000)
    rows.append(run("incremental", big["n"], big["d"], big["budget"], threads=threads))
    rows.append(run("incremental", big["n"], big["d"], big["budget"], n_centers=5000, threads=threads))
    small = dict(n=5000, d=300, budget=1000)
    inc_small = run("incremental", small["n"], small["d"], small["budget"], threads=threads)
    naive_small = run("naive", small["n"], small["d"], small["budget"], threads=threads)
    rows += [inc_small, naive_small]

    for r in rows:
        r["X_bytes"] = r["N"] * r["D"] * 4
        r["NxN_bytes"] = r["N"] * r["N"] * 4
        r["extra_over_X"] = r["extra_peak_bytes"] / r["X_bytes"]
    same = inc_small["picks"] == naive_small["picks"]
    first_diff = next((i for i, (a, b) in enumerate(zip(inc_small["picks"], naive_small["picks"])) if a != b), None)
    agree = len(set(inc_small["picks"]) & set(naive_small["picks"])) / small["budget"]
    for r in rows:
        r.pop("picks", None)

    print(f"{'case':<28}{'N':>7}{'D':>5}{'k':>6}{'thr':>4}{'load':>6}{'sec':>9}{'extra MiB':>11}"
          f"{'X MiB':>8}{'extra/X':>9}{'NxN MiB':>10}")
    for r in rows:
        name = f"{r['kind']}" + (f"+{r['n_centers']} centres" if r["n_centers"] else "")
        print(f"{name:<28}{r['N']:>7}{r['D']:>5}{r['budget']:>6}{r['threads']:>4}"
              f"{r['loadavg_1min_before']:>6.1f}{r['seconds']:>9.2f}"
              f"{r['extra_peak_bytes'] / mib:>11.1f}{r['X_bytes'] / mib:>8.1f}{r['extra_over_X']:>9.2f}"
              f"{r['NxN_bytes'] / mib:>10.0f}")
    ratio_t = naive_small["seconds"] / inc_small["seconds"]
    # RSS granularity: floor the incremental extra at 1 MiB so the ratio is a lower bound
    ratio_m = naive_small["extra_peak_bytes"] / max(inc_small["extra_peak_bytes"], mib)
    print(f"N=5000: naive/incremental time ratio {ratio_t:.2f}x, extra-memory ratio >= {ratio_m:.0f}x, "
          f"identical pick order: {same} (first difference at pick {first_diff}; float32 "
          f"matmul-form vs direct distances round differently), same set fraction: {agree:.3f}")

    result = {
        "rows": rows,
        "n5000_naive_over_incremental_time": ratio_t,
        "n5000_naive_over_incremental_extra_memory": ratio_m,
        "n5000_identical_picks": same,
        "n5000_same_set_fraction": agree,
        "n5000_first_differing_pick": first_diff,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpu_count": os.cpu_count()},
        "note": "extra_peak_bytes = ru_maxrss after the call - RSS just before it, fresh process per row",
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "kcenter.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        k, n, d, b, m, t = sys.argv[2:8]
        worker(k, int(n), int(d), int(b), int(m), int(t))
    else:
        main(threads=int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 0)
