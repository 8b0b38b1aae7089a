"""Peak memory of NoiseStability on segmentation (feature maps pooled per image).

NoiseStability on a dense task reads the final deep feature map ``[C, h, w]`` of DRN-D-22
and pools it per image (``feature_pool``), batch by batch, so the memory beyond the model is
the returned ``[N, K*d]`` matrix plus one batch of maps — never an ``N x K x C x h x w``
tensor. This harness measures it: each (N, K, pool) runs in a fresh process, which reports
its peak resident set size (``ru_maxrss``, everything torch allocates, which ``tracemalloc``
does not see) after scoring, minus its peak after one plain inference pass over the same
images and batch size. The growth is compared with the size of the returned matrix and with
the size an unpooled ``[N, K, C, h, w]`` float32 tensor would have.

Usage: .venv/bin/python benchmarks/bench_ns_segmentation.py [--n 256 1024] [--k 5 30]
       [--size 48] [--width 4] [--batch-size 64]
Writes benchmarks/results/ns_segmentation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from alstudy import models  # noqa: E402
from alstudy.strategies.noise_stability import noise_stability_embedding  # noqa: E402


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB


def child(n: int, k: int, size: int, width: int, batch_size: int, pool: str) -> dict:
    """One measurement in this (fresh) process."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = models.build("drn_d_22", (1, size, size), 11, width=width).eval()
    x = torch.randn(n, 1, size, size)
    with torch.no_grad():  # the floor: one plain inference pass, batch by batch
        maps = [model.features(x[i : i + batch_size]).shape for i in range(0, n, batch_size)]
    floor = _maxrss_bytes()
    emb = noise_stability_embedding(model, x, K=k, output="features", feature_pool=pool,
                                    pool_grid=2, batch_size=batch_size,
                                    generator=torch.Generator().manual_seed(0))
    peak = _maxrss_bytes()
    c, h, w = maps[0][1:]
    return {"N": n, "K": k, "feature_pool": pool, "feature_map": [c, h, w],
            "output_shape": list(emb.shape), "output_bytes": emb.numel() * emb.element_size(),
            "unpooled_NKChw_float32_bytes": n * k * c * h * w * 4,
            "peak_rss_after_inference_bytes": floor, "peak_rss_after_scoring_bytes": peak,
            "growth_bytes": peak - floor}


def main() -> None:
    """Run every (N, K, pool) in a fresh process and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--k", type=int, nargs="+", default=[5, 30])
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pools", nargs="+", default=["mean", "grid"])
    ap.add_argument("--child", nargs=3, metavar=("N", "K", "POOL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, k, pool = int(args.child[0]), int(args.child[1]), args.child[2]
        print(json.dumps(child(n, k, args.size, args.width, args.batch_size, pool)))
        return
    rows = []
    for pool in args.pools:
        for n in args.n:
            for k in args.k:
                out = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--width",
                                      str(args.width), "--batch-size", str(args.batch_size),
                                      "--child", str(n), str(k), pool],
                                     capture_output=True, text=True, check=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"pool={pool:4s} N={n:5d} K={k:3d}: growth {row['growth_bytes'] / 2**20:7.1f} MiB, "
                      f"output {row['output_bytes'] / 2**20:7.1f} MiB, unpooled N*K*C*h*w "
                      f"{row['unpooled_NKChw_float32_bytes'] / 2**20:9.1f} MiB", flush=True)
    c, h, w = 512, 86, 86  # DRN-D-22 at the paper's 688 crops
    paper = {"N": 2678, "K": 30, "feature_map": [c, h, w],
             "pooled_mean_output_bytes": 2678 * 30 * c * 4,
             "unpooled_NKChw_float32_bytes": 2678 * 30 * c * h * w * 4}
    report = {"setup": {"model": "drn_d_22", "width": args.width, "input": [1, args.size, args.size],
                        "batch_size": args.batch_size, "threads": 1, "torch": torch.__version__,
                        "platform": platform.platform(),
                        "measure": "peak RSS after scoring minus peak RSS after one inference pass, "
                                   "fresh process per row"},
              "rows": rows, "paper_shapes_arithmetic": paper}
    path = os.path.join(HERE, "results", "ns_segmentation.json")
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2)
    print(path)


if __name__ == "__main__":
    main()
