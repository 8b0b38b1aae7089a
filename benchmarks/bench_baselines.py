"""Speed and memory of two baseline implementations (CPU).

1. MC dropout with T = 50 passes (Gal et al. 2017): one batched forward per chunk
   (``mc_dropout_probs(batched=True)``), replicating the chunk at the first dropout layer
   (default) or at the input, against (a) T sequential passes with the same explicit masks
   (``batched=False``) and (b) the common naive loop (dropout modules in train mode, T calls
   of ``model(x)``). Small CNN of the NoiseStability paper (dropout 0.5 before its last layer)
   on real MNIST digits, M = 256 and M = 32 candidates, default 1024 rows per forward.
   Best of ``--repeats``.
2. BADGE k-means++ seeding on gradient embeddings g = (p − e_ŷ) ⊗ z: factorised distances
   (O(N(C + d)) memory) against the explicit N × C·d embedding, N = 20,000, C = 10, d = 128;
   and the factorised version alone at C = 100, d = 512, where the explicit float32 matrix
   would take 4.1 GB. Each BADGE case runs in a fresh process; its extra peak memory is the
   peak RSS during the seeding (VmHWM, reset through /proc/self/clear_refs just before) minus
   the RSS before it, i.e. what the seeding allocates on top of its inputs (0 when that is
   below what the process heap already held).

Usage: .venv/bin/python benchmarks/bench_baselines.py [--threads 1] [--repeats 2]
Writes benchmarks/results/baselines.json. All ratios are measured within one run.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import torch  # noqa: E402


def _status(key):
    """A /proc/self/status field in bytes (Linux)."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _best(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


# --------------------------------------------------------------------------- MC dropout
def bench_mc_dropout(repeats):
    from alstudy import data, models
    from alstudy.strategies.mc_dropout import active_dropout_modules, mc_dropout_probs

    T = 50
    ds = data.load("mnist", max_train=1000)
    torch.manual_seed(0)
    model = models.build("small_cnn", ds.input_shape, 10, dropout=0.5).eval()
    rows = []
    for m in (256, 32):
        x = ds.x_train[:m]
        run = lambda **kw: mc_dropout_probs(model, x, T, torch.Generator().manual_seed(0), **kw)

        @torch.no_grad()
        def naive():
            for d in active_dropout_modules(model):
                d.train()
            try:
                return torch.stack([torch.softmax(model(x).double(), -1) for _ in range(T)])
            finally:
                model.eval()

        run()  # warm-up
        t_b, p_b = _best(run, repeats)
        t_i, p_i = _best(lambda: run(replicate="input"), repeats)
        t_s, p_s = _best(lambda: run(batched=False), repeats)
        t_n, _ = _best(naive, repeats)
        rows.append({
            "case": f"mc_dropout T={T} M={m}", "T": T, "M": m, "rows_per_forward": 1024 // T * T,
            "batched_first_dropout_s": t_b, "batched_input_replicas_s": t_i,
            "sequential_same_masks_s": t_s, "naive_train_mode_loop_s": t_n,
            "speedup_vs_sequential": t_s / t_b, "speedup_vs_naive": t_n / t_b,
            "speedup_input_replicas_vs_sequential": t_s / t_i,
            "max_abs_diff_batched_vs_sequential": float((p_b - p_s).abs().max()),
            "max_abs_diff_input_replicas_vs_sequential": float((p_i - p_s).abs().max()),
        })
        print(json.dumps(rows[-1]))
    return rows


# --------------------------------------------------------------------------- BADGE (child)
def badge_child(mode, n, c, d, budget, first):
    """Run one BADGE seeding in this (fresh) process and print a JSON line."""
    from alstudy.strategies import build

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    p = torch.softmax(logits, 1)
    a = p - torch.nn.functional.one_hot(p.argmax(1), c).double()  # [N, C]
    z = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64))  # [N, d]
    s = build("badge", embedding=mode, first=first)
    s.seed_from_factors(a[:50], z[:50], 5, torch.Generator().manual_seed(1))  # warm-up
    before = _status("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    picks = s.seed_from_factors(a, z, budget, torch.Generator().manual_seed(1))
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - before
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_increase_bytes": peak,
                      "inputs_bytes": a.numel() * 8 + z.numel() * 8, "picks": picks.tolist()}))


def run_child(*args):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *map(str, args)],
                         capture_output=True, text=True, check=True, env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_badge(threads):
    rows = []
    budget = 200
    for n, c, d, modes in [(20000, 10, 128, ("factorised", "explicit")),
                           (20000, 100, 512, ("factorised",))]:
        res = {m: run_child("--threads", threads, "--child", m, n, c, d, budget, "max_norm")
               for m in modes}
        explicit_bytes = n * c * d * 4
        row = {"case": f"badge N={n} C={c} d={d} budget={budget}", "N": n, "C": c, "d": d,
               "budget": budget, "explicit_embedding_float32_bytes": explicit_bytes,
               "factorised_s": res["factorised"]["seconds"],
               "factorised_peak_increase_bytes": res["factorised"]["peak_increase_bytes"],
               "factor_inputs_bytes": res["factorised"]["inputs_bytes"],
               # null when the increase is below the resolution of VmHWM (the heap already
               # held the few N-sized vectors the factorised seeding allocates)
               "explicit_over_factorised_peak": explicit_bytes
               / res["factorised"]["peak_increase_bytes"]
               if res["factorised"]["peak_increase_bytes"] > 0 else None}
        if "explicit" in res:
            row.update({"explicit_s": res["explicit"]["seconds"],
                        "explicit_peak_increase_bytes": res["explicit"]["peak_increase_bytes"],
                        "speedup_factorised_vs_explicit": res["explicit"]["seconds"]
                        / res["factorised"]["seconds"],
                        "same_picks": res["explicit"]["picks"] == res["factorised"]["picks"]})
        rows.append(row)
        print(json.dumps(row))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        mode, n, c, d, budget, first = args.child
        badge_child(mode, int(n), int(c), int(d), int(budget), first)
        return
    load = os.getloadavg()[0]
    mc = bench_mc_dropout(args.repeats)
    badge = bench_badge(args.threads)
    result = {"benchmark": "baselines", "threads": args.threads, "repeats": args.repeats,
              "load_average_1min_at_start": load, "torch": torch.__version__,
              "platform": platform.platform(), "cpu_count": os.cpu_count(),
              "mc_dropout": mc, "badge": badge}
    path = os.path.join(HERE, "results", "baselines.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
