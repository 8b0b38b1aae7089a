"""Speed, memory and numerics of NoiseStability scoring (alstudy.strategies.noise_stability).

1. Speed (this process, all ratios measured in one run): scoring N pool images with the
   small CNN of the NoiseStability paper and K draws, compared with the floor of K + 1 no-grad
   readouts of the same images into an [N, d] buffer (the scorer's own readout, batch size,
   eval mode and threads: the scorer does this plus the noise and the differences, so the
   ratio is >= 1 up to timing noise), and with the authors' way of
   doing the same work (a deep copy of the model per draw, noise added module by module,
   outputs concatenated, each row divided by its clean norm in a Python loop). Pool: the
   Fashion-MNIST training images (``alstudy.data.load("fashion_mnist")``) or, when those are
   missing, the MNIST images tiled to N.
2. Peak memory (a fresh process per measurement): peak RSS of scoring above the peak of one
   plain inference pass over the same inputs, for two values of K, compared with the growth of
   the [N, K*d] output it returns and with what K live copies of the model would cost.
3. Numerics: relative difference ‖E_a − E_b‖_F / ‖E_b‖_F between the float32 finite
   difference (Eq 1), the same difference in float64, and forward-mode jvp, for several ζ,
   on a briefly trained small CNN.

Every case runs once as a discarded warm-up, then ``--repeats`` times interleaved with the
order rotated; the minimum is kept.

Usage: .venv/bin/python benchmarks/bench_noise_stability.py [--n 10000] [--k 30]
       [--batch-size 1000] [--threads 1] [--repeats 3] [--mem-n 1000] [--mem-k 5 40]
       [--sections speed memory numerics]
Writes benchmarks/results/noise_stability.json (sections not run keep their stored results).
"""

from __future__ import annotations

import argparse
import copy
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

import torch  # noqa: E402

from alstudy import data, models  # noqa: E402
from alstudy.strategies.noise_stability import _Readout, noise_stability_embedding  # noqa: E402

SEED = 0
OFFICIAL = dict(noise_norm="per_tensor", perturb="all", include_bias=False, output="probs",
                row_norm="clean_output")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB


def pool_images(n: int) -> tuple[torch.Tensor, str]:
    """``[n, 1, 28, 28]`` pool images: Fashion-MNIST train, else MNIST tiled."""
    try:
        ds = data.load("fashion_mnist")
        src = "fashion_mnist"
    except data.DatasetUnavailable:
        ds = data.load("mnist")
        src = "mnist (tiled)"
    x = ds.x_train
    reps = -(-n // x.shape[0])
    return x.repeat(reps, 1, 1, 1)[:n].contiguous(), src


def small_cnn(**opts) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return models.build("small_cnn", (1, 28, 28), 10, **opts).eval()


@torch.no_grad()
def floor_passes(model, x, passes, batch_size, output="probs"):
    """The work no exact method can skip: ``passes`` readouts of every batch into an ``[N, d]``
    buffer, with the scorer's own readout (:class:`_Readout`), batch size, eval mode and threads.
    ``noise_stability_embedding`` does exactly this for its K + 1 passes, plus the noise, the
    differences and the ``[N, K*d]`` output, so its ratio to this floor is >= 1 up to timing
    noise."""
    readout = _Readout(model, output)
    n = x.shape[0]
    buf = None
    for _ in range(passes):
        for i in range(0, n, batch_size):
            z = readout(x[i:i + batch_size])
            if buf is None:
                buf = torch.empty(n, z.shape[1], dtype=z.dtype)
            buf[i:i + batch_size] = z
    return buf


@torch.no_grad()
def authors_scoring(model, x, K, zeta, batch_size, generator):
    """The authors' loop: deep copy per draw, ``module.weight`` noise rescaled to ζ‖W‖_F,
    softmax outputs concatenated batch by batch, rows divided by ‖clean row‖ one at a time."""

    def all_outputs(m):
        out = torch.tensor([])
        for i in range(0, x.shape[0], batch_size):
            out = torch.cat((out, torch.softmax(m(x[i:i + batch_size]), dim=1)), dim=0)
        return out

    def add_noise(m):
        if hasattr(m, "weight") and isinstance(m.weight, torch.Tensor):
            noise = torch.randn(m.weight.size(), generator=generator)
            noise *= zeta * m.weight.norm() / noise.norm()
            m.weight.add_(noise)

    outputs = all_outputs(model)
    diffs = torch.tensor([])
    for _ in range(K):
        noisy = copy.deepcopy(model)
        noisy.eval()
        noisy.apply(add_noise)
        diff_k = all_outputs(noisy) - outputs
        for j in range(diff_k.shape[0]):
            diff_k[j, :] /= outputs[j].norm()
        diffs = torch.cat((diffs, diff_k), dim=1)
    return diffs


def _timed(fn):
    """``(wall seconds, CPU seconds of this process, result)``; CPU time is what other jobs on a
    shared machine disturb least."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def speed(n, K, batch_size, repeats):
    x, src = pool_images(n)
    model = small_cnn()
    cases = {
        "floor_K+1_forwards": lambda: floor_passes(model, x, K + 1, batch_size),
        "ns_paper": lambda: noise_stability_embedding(
            model, x, K=K, generator=torch.Generator().manual_seed(1), batch_size=batch_size),
        "ns_official_options": lambda: noise_stability_embedding(
            model, x, K=K, generator=torch.Generator().manual_seed(1), batch_size=batch_size,
            **OFFICIAL),
        "authors_deepcopy_per_draw": lambda: authors_scoring(
            model, x, K, 1e-3, batch_size, torch.Generator().manual_seed(1)),
    }
    times = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    before = [p.detach().clone() for p in model.parameters()]
    names = list(cases)
    warm = {name: fn() for name, fn in cases.items()}  # one discarded run of every case
    shape = tuple(warm.pop("ns_paper").shape)
    del warm
    for r in range(repeats):  # interleaved, the order rotated, so no case always runs first
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu_s, out = _timed(cases[name])
            times[name].append(wall)
            cpu[name].append(cpu_s)
            del out
    unchanged = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    best = {name: min(t) for name, t in times.items()}  # min: the least disturbed run
    best_cpu = {name: min(t) for name, t in cpu.items()}
    res = {"pool": src, "N": n, "K": K, "batch_size": batch_size, "repeats": repeats,
           "threads": torch.get_num_threads(), "output_shape": shape,
           "wall_seconds_min": best, "cpu_seconds_min": best_cpu,
           "wall_seconds_all": times, "cpu_seconds_all": cpu,
           "parameters_bit_identical_after_scoring": unchanged}
    for clock, b in (("wall", best), ("cpu", best_cpu)):
        floor = b["floor_K+1_forwards"]
        res[f"{clock}_ratio_ns_paper_to_floor"] = b["ns_paper"] / floor
        res[f"{clock}_ratio_ns_official_options_to_floor"] = b["ns_official_options"] / floor
        res[f"{clock}_ratio_authors_deepcopy_to_floor"] = b["authors_deepcopy_per_draw"] / floor
        res[f"{clock}_speedup_over_authors_deepcopy"] = b["authors_deepcopy_per_draw"] / b["ns_paper"]
    print(f"\n[speed] pool={src} N={n} K={K} batch={batch_size} threads={res['threads']} "
          f"(min of {repeats}; load average {os.getloadavg()[0]:.1f})")
    print(f"  {'case':<28}{'wall s':>9}{'/floor':>8}{'CPU s':>9}{'/floor':>8}")
    for name in cases:
        print(f"  {name:<28}{best[name]:>9.2f}{best[name] / best['floor_K+1_forwards']:>8.2f}"
              f"{best_cpu[name]:>9.2f}{best_cpu[name] / best_cpu['floor_K+1_forwards']:>8.2f}")
    print(f"  speed-up over the authors' deep-copy loop: wall "
          f"{res['wall_speedup_over_authors_deepcopy']:.2f}x, CPU "
          f"{res['cpu_speedup_over_authors_deepcopy']:.2f}x; parameters bit-identical after "
          f"scoring: {unchanged}")
    return res


# ----------------------------------------------------------------------------- memory
MEM_MODEL = dict(width=32, hidden=2048)  # 2.1M parameters: K live copies would be obvious
MEM_BATCH = 100  # small batches keep the transient activation memory of inference small
# glibc: serve every allocation above 64 KiB by mmap and return it at once, so that RSS follows
# live memory instead of the allocator's adaptive caching (which varies from run to run)
MALLOC_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0",
              "MALLOC_ARENA_MAX": "1"}


def mem_worker(method, n, K, threads):
    """One peak-memory measurement in this (fresh) process; prints a JSON line."""
    if threads > 0:
        torch.set_num_threads(threads)
    model = small_cnn(**MEM_MODEL)
    x = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(SEED))
    bs = MEM_BATCH
    run = {"ns": lambda xx, k: noise_stability_embedding(model, xx, K=k, batch_size=bs,
                                                         generator=torch.Generator()),
           "authors_deepcopy": lambda xx, k: authors_scoring(model, xx, k, 1e-3, bs,
                                                             torch.Generator())}[method]
    run(x[:8], 1)  # warm-up outside the measurement
    rss0 = _rss_bytes()
    floor_passes(model, x, 1, bs)  # the peak that plain inference over x needs anyway
    inference_peak = _maxrss_bytes()
    out = run(x, K)
    peak = _maxrss_bytes()
    print(json.dumps({"method": method, "N": n, "K": K, "extra_peak_bytes": peak - inference_peak,
                      "peak_over_rss_before_bytes": peak - rss0,
                      "inference_peak_over_rss_before_bytes": inference_peak - rss0,
                      "output_bytes": out.numel() * out.element_size(),
                      "model_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
                      "threads": torch.get_num_threads()}))


def memory(n, ks, threads):
    rows = []
    for method in ("ns", "authors_deepcopy"):
        for K in ks:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--mem-worker",
                                  method, str(n), str(K), str(threads)],
                                 check=True, capture_output=True, text=True, env=MALLOC_ENV)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mib = 2**20
    print(f"\n[memory] small CNN {MEM_MODEL} ({rows[0]['model_bytes'] / mib:.1f} MiB of parameters),"
          f" N={n}, batch {MEM_BATCH}, output=probs (d=10), fresh process per row; MiB above the "
          "RSS before: peak of one plain inference pass, peak after scoring, scoring beyond "
          "inference")
    print(f"  {'method':<18}{'K':>4}{'inference MiB':>15}{'scoring MiB':>13}{'beyond MiB':>12}"
          f"{'output MiB':>12}{'K copies MiB':>14}")
    for r in rows:
        print(f"  {r['method']:<18}{r['K']:>4}{r['inference_peak_over_rss_before_bytes'] / mib:>15.1f}"
              f"{r['peak_over_rss_before_bytes'] / mib:>13.1f}{r['extra_peak_bytes'] / mib:>12.1f}"
              f"{r['output_bytes'] / mib:>12.1f}{r['K'] * r['model_bytes'] / mib:>14.1f}")
    summary = {}
    for method in ("ns", "authors_deepcopy"):
        lo, hi = [r for r in rows if r["method"] == method]
        growth = hi["peak_over_rss_before_bytes"] - lo["peak_over_rss_before_bytes"]
        out_growth = hi["output_bytes"] - lo["output_bytes"]
        summary[method] = {"peak_growth_bytes": growth, "output_growth_bytes": out_growth,
                           "peak_growth_over_output_growth": growth / out_growth,
                           "k_model_copies_growth_bytes": (hi["K"] - lo["K"]) * hi["model_bytes"]}
        print(f"  {method}: K {lo['K']} -> {hi['K']}: peak +{growth / mib:.1f} MiB, output "
              f"+{out_growth / mib:.1f} MiB (ratio {growth / out_growth:.2f}); "
              f"{hi['K'] - lo['K']} more model copies would be +"
              f"{(hi['K'] - lo['K']) * hi['model_bytes'] / mib:.1f} MiB")
    return {"rows": rows, "summary": summary, "model_options": MEM_MODEL,
            "batch_size": MEM_BATCH, "malloc_env": {k: v for k, v in MALLOC_ENV.items()
                                                    if k.startswith("MALLOC_")},
            "note": "peak_over_rss_before = peak RSS after scoring - RSS before (after the model "
                    "and inputs exist); extra_peak_bytes = peak RSS after scoring - peak RSS after "
                    "one plain inference pass over the same inputs; fresh process per row"}


# ----------------------------------------------------------------------------- numerics
def numerics(zetas=(1e-6, 1e-5, 1e-4, 1e-3), K=4, n=300):
    from alstudy.train import TrainConfig, fit

    ds = data.load("mnist")
    model = small_cnn()
    fit(model, ds.x_train[:1000], ds.y_train[:1000], TrainConfig(epochs=2),
        generator=torch.Generator().manual_seed(SEED))
    model.eval()
    x = ds.x_train[1000:1000 + n]

    def rel(a, b):
        return float((a.double() - b.double()).norm() / b.double().norm())

    rows = []
    print(f"\n[numerics] small CNN trained 2 epochs on 1,000 MNIST digits; N={n}, K={K}; "
          "relative Frobenius differences")
    print(f"  {'output':<9}{'zeta':>7}{'f32 vs f64':>12}{'f64 vs jvp':>12}{'f32 vs jvp':>12}")
    for output in ("probs", "logits", "features"):
        for zeta in zetas:
            e = {m: noise_stability_embedding(model, x, K=K, zeta=zeta, output=output,
                                              difference=m, generator=torch.Generator().manual_seed(3))
                 for m in ("finite", "finite64", "jvp")}
            row = {"output": output, "zeta": zeta,
                   "finite32_vs_finite64": rel(e["finite"], e["finite64"]),
                   "finite64_vs_jvp": rel(e["finite64"], e["jvp"]),
                   "finite32_vs_jvp": rel(e["finite"], e["jvp"])}
            rows.append(row)
            print(f"  {output:<9}{zeta:>7.0e}{row['finite32_vs_finite64']:>12.2e}"
                  f"{row['finite64_vs_jvp']:>12.2e}{row['finite32_vs_jvp']:>12.2e}")
    return {"K": K, "N": n, "perturb": "features", "noise_norm": "global", "rows": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="pool size for the speed case")
    ap.add_argument("--k", type=int, default=30, help="noise draws K for the speed case")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved timing repeats after one discarded warm-up (minimum is kept)")
    ap.add_argument("--mem-n", type=int, default=1000)
    ap.add_argument("--mem-k", type=int, nargs=2, default=[5, 40])
    ap.add_argument("--sections", nargs="+", default=["speed", "memory", "numerics"],
                    choices=["speed", "memory", "numerics"],
                    help="sections to run; the others keep their stored results")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    path = os.path.join(HERE, "results", "noise_stability.json")
    result = {}
    if set(args.sections) != {"speed", "memory", "numerics"} and os.path.exists(path):
        with open(path) as f:
            result = json.load(f)
    run = {"speed": lambda: speed(args.n, args.k, args.batch_size, args.repeats),
           "memory": lambda: memory(args.mem_n, args.mem_k, args.threads),
           "numerics": numerics}
    for section in args.sections:
        t0 = time.perf_counter()
        result[section] = run[section]()
        result[section]["seconds"] = time.perf_counter() - t0
        result[section]["machine"] = {
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "loadavg_1min_at_end": os.getloadavg()[0]}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {os.path.relpath(path, ROOT)} ({', '.join(args.sections)})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--mem-worker":
        method, n, k, t = sys.argv[2:6]
        mem_worker(method, int(n), int(k), int(t))
    else:
        main()
