"""Speed of SAAL scoring (alstudy.strategies.saal.saal_scores) on the CPU.

For each model (the NoiseStability/MNIST small CNN on 1x28x28, a narrow ResNet-18 with
width 8 on 3x32x32) and each perturbation (sam, asam), in one process:

* ``reference``: the authors' pattern - one ``copy.deepcopy`` of the model per candidate,
  batch size 1: forward, backward, move the weights, forward again. It is linear in the number
  of candidates, so it is timed on ``--ref-n`` candidates and scaled to ``--n``.
* ``fast`` and ``functorch``: the two batched implementations of
  :func:`alstudy.persample.perturbed_losses` on all ``--n`` candidates.
* ``floor``: what any exact method must at least do, in the scorer's chunks
  (:func:`alstudy.persample.default_chunk_size`): one batched forward, the backward to the layer
  outputs (no weight gradients) and one more batched forward. The fast path does this and
  more, so its ratio is >= 1 by construction (up to timing noise).

Each timing is the minimum over ``--repeats`` runs (wall clock and, as a check against other
processes on the machine, the process CPU time). Ratios are computed from numbers taken in
this one run. Inputs are random normal images (speed does not depend on the values).

Usage: .venv/bin/python benchmarks/bench_saal.py [--n 2000] [--threads 1] [--repeats 3]
Writes benchmarks/results/saal.json (with the machine's load average at start and end).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from alstudy import models  # noqa: E402
from alstudy.persample import default_chunk_size, perturbed_losses  # noqa: E402

CASES = {
    "small_cnn": ((1, 28, 28), {}),
    "resnet18_w8": ((3, 32, 32), {"width": 8}),
}


def reference_deepcopy(model, x, rho, asam):
    """The authors' loop: deepcopy per candidate, batch size 1, ASAM or SAM step."""
    model.eval()
    out = []
    for i in range(x.shape[0]):
        m = copy.deepcopy(model)
        xi = x[i:i + 1]
        logits = m(xi)
        y = logits.argmax(1)
        F.cross_entropy(logits, y).backward()
        with torch.no_grad():
            ps = [p for p in m.parameters() if p.grad is not None]
            if asam:
                norm = torch.norm(torch.stack([(p.abs() * p.grad).norm() for p in ps]))
                for p in ps:
                    p.add_(p.pow(2) * p.grad * (rho / (norm + 1e-12)))
            else:
                norm = torch.norm(torch.stack([p.grad.norm() for p in ps]))
                for p in ps:
                    p.add_(p.grad * (rho / (norm + 1e-12)))
            out.append(F.cross_entropy(m(xi), y))
    return torch.stack(out)


def floor(model, x, chunk):
    """The work every exact per-sample perturbed loss needs, in the scorer's own chunks: one
    forward, the backward to the layer outputs (the deltas, no weight gradients: parameters
    frozen, the first parametrised layer's output made the leaf) and a second forward. The fast
    path does exactly this plus the per-sample norms and the perturbed corrections, so its
    ratio to this floor is >= 1 up to timing noise."""
    model.eval()
    first = next(m for m in model.modules()
                 if any(p.requires_grad for p in m.parameters(recurse=False)))
    leaf = {}

    def as_leaf(module, inputs, out):
        leaf["out"] = out.detach().requires_grad_()
        return leaf["out"]

    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    handle = first.register_forward_hook(as_leaf)
    try:
        with torch.enable_grad():
            for s in range(0, x.shape[0], chunk):
                logits = model(x[s:s + chunk])
                loss = F.cross_entropy(logits, logits.argmax(1), reduction="sum")
                torch.autograd.grad(loss, leaf["out"])
    finally:
        handle.remove()
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            model(x[s:s + chunk])


def timed(fn, repeats, warm=None):
    """Minimum wall and CPU seconds over ``repeats`` runs of ``fn`` after one run of ``warm``
    (default ``fn``; one-time costs such as kernel selection are not counted)."""
    (warm or fn)()
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def write_results(results, path):
    """Add the load average at the end to ``results`` and write them to ``path`` as JSON."""
    results["load_average_at_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="candidates scored")
    ap.add_argument("--ref-n", type=int, default=100, help="candidates for the per-instance loop")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "saal.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {"n": args.n, "ref_n": args.ref_n, "threads": args.threads, "repeats": args.repeats,
               "torch": torch.__version__, "platform": platform.platform(),
               "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(), "cases": {}}
    for name, (shape, opts) in CASES.items():
        model = models.build(name.split("_w")[0], shape, 10, **opts).eval()
        x = torch.randn(args.n, *shape)
        case = {"params": sum(p.numel() for p in model.parameters()),
                "chunk_size": default_chunk_size(model)}
        fw, fc = timed(lambda: floor(model, x, case["chunk_size"]), args.repeats)
        case["floor"] = {"wall_s": fw, "cpu_s": fc}
        print(f"{name}: floor {fw:.3f} s (cpu {fc:.3f})", flush=True)
        for pert in ["sam", "asam"]:
            asam = pert == "asam"
            ref_scores = reference_deepcopy(model, x[:args.ref_n], args.rho, asam).detach()
            rw, rc = timed(lambda: reference_deepcopy(model, x[:args.ref_n], args.rho, asam), 1,
                           warm=lambda: None)
            scale = args.n / args.ref_n
            row = {"reference": {"wall_s": rw * scale, "cpu_s": rc * scale,
                                 "measured_on": args.ref_n}}
            for method in ["fast", "functorch"]:
                def score(inputs):
                    return perturbed_losses(model, inputs, rho=args.rho, perturbation=pert,
                                            method=method).perturbed

                got = score(x[:args.ref_n])  # also the warm-up
                w, c = timed(lambda: score(x), args.repeats, warm=lambda: None)
                rel = float(((got - ref_scores).abs() / ref_scores.abs().clamp_min(1e-12)).max())
                row[method] = {"wall_s": w, "cpu_s": c, "max_rel_diff_vs_reference": rel,
                               "speedup_vs_reference_wall": rw * scale / w,
                               "speedup_vs_reference_cpu": rc * scale / c,
                               "ratio_to_floor_wall": w / fw, "ratio_to_floor_cpu": c / fc}
                print(f"  {pert:4s} {method:9s} {w:.3f} s (cpu {c:.3f}); reference "
                      f"{rw * scale:.2f} s -> {rw * scale / w:.1f}x faster; "
                      f"{w / fw:.2f}x floor (cpu {c / fc:.2f}x); max rel diff {rel:.1e}", flush=True)
            case[pert] = row
        results["cases"][name] = case
    write_results(results, args.out)


if __name__ == "__main__":
    main()
