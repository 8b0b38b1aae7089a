"""Speed of SAAL's detection score (alstudy.detection.acquisition) on the CPU.

On the narrow SSD of the cpu preset (64×64 single-channel canvases, width 16), trained for a few
epochs on MNIST detection canvases so that it has pseudo boxes, in one process:

* ``loop``: one ``copy.deepcopy`` of the model per image, batch size 1: forward, backward, move
  the weights by ρ g/‖g‖, forward again (:func:`perturbed_detection_losses_loop`). It is linear in
  the number of images, so it is timed on ``--ref-n`` images and scaled to ``--n``.
* ``batched``: :func:`perturbed_detection_losses` (``torch.func.vmap`` of the per-image gradient
  and of the forward pass at each image's own perturbed parameters) on all ``--n`` images.
* ``floor``: one ordinary batched forward + backward of the summed pseudo-box loss plus one
  batched forward: what any exact method must at least do.

Both "corresponding" choices (``source``, ``matched``) are timed; the pseudo boxes are computed
once beforehand (the same cost for every method). Each timing is the minimum over
``--repeats`` runs (wall clock and process CPU time).

Usage: .venv/bin/python benchmarks/bench_saal_detection.py [--n 500] [--threads 1]
Writes benchmarks/results/saal_detection.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.append(HERE)  # the sibling benchmark bench_saal

import torch  # noqa: E402

from alstudy import data, models  # noqa: E402
from alstudy.detection.acquisition import (perturbed_detection_losses,  # noqa: E402
                                           perturbed_detection_losses_loop, pseudo_box_loss,
                                           pseudo_boxes, pseudo_targets)
from alstudy.train import TrainConfig, fit  # noqa: E402
from bench_saal import timed, write_results  # noqa: E402


def floor(model, x, targets, batch=64):
    """Batched forward + backward of the summed loss, then a batched forward."""
    model.eval()
    for s in range(0, x.shape[0], batch):
        pri, cls, w = targets.slice(s, s + batch)
        pseudo_box_loss(model(x[s:s + batch])[1], pri, cls, w).sum().backward()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            model(x[s:s + batch])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="images scored")
    ap.add_argument("--ref-n", type=int, default=100, help="images for the per-image loop")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "saal_detection.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.load("mnist_detection")
    torch.manual_seed(0)
    model = models.build("ssd", ds.input_shape, 10, width=args.width)
    fit(model, ds.x_train[:300], ds.y_train[:300], TrainConfig(epochs=5, batch_size=32), task="detection")
    model.eval()
    x = ds.x_train[300:300 + args.n]
    dets = pseudo_boxes(model, x)
    results = {"n": args.n, "ref_n": args.ref_n, "threads": args.threads, "repeats": args.repeats,
               "width": args.width, "params": sum(p.numel() for p in model.parameters()),
               "torch": torch.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "load_average_at_start": os.getloadavg(), "pseudo_boxes_per_image":
               sum(len(d["scores"]) for d in dets) / len(dets), "cases": {}}
    for corr in ("source", "matched"):
        targets = pseudo_targets(dets, model.priors, corr)
        fw, fc = timed(lambda: floor(model, x, targets), args.repeats)
        sub = pseudo_targets(dets[:args.ref_n], model.priors, corr)
        ref = perturbed_detection_losses_loop(model, x[:args.ref_n], sub, rho=args.rho)[0]
        lw, lc = timed(lambda: perturbed_detection_losses_loop(model, x[:args.ref_n], sub, rho=args.rho),
                       1, warm=lambda: None)
        scale = args.n / args.ref_n
        got = perturbed_detection_losses(model, x[:args.ref_n], sub, rho=args.rho)[0]  # warm-up too
        bw, bc = timed(lambda: perturbed_detection_losses(model, x, targets, rho=args.rho), args.repeats,
                       warm=lambda: None)
        rel = float(((got.double() - ref).abs() / ref.abs().clamp_min(1e-12)).max())
        results["cases"][corr] = {
            "corresponding_priors_per_image": float(targets.weight.sum(1).mean()),
            "floor": {"wall_s": fw, "cpu_s": fc},
            "loop": {"wall_s": lw * scale, "cpu_s": lc * scale, "measured_on": args.ref_n},
            "batched": {"wall_s": bw, "cpu_s": bc, "max_rel_diff_vs_loop": rel,
                        "speedup_vs_loop_wall": lw * scale / bw, "speedup_vs_loop_cpu": lc * scale / bc,
                        "ratio_to_floor_wall": bw / fw, "ratio_to_floor_cpu": bc / fc}}
        print(f"{corr:8s} floor {fw:.2f} s | loop {lw * scale:.2f} s | batched {bw:.2f} s "
              f"({lw * scale / bw:.1f}x faster than the loop, {bw / fw:.1f}x the floor; cpu "
              f"{lc * scale / bc:.1f}x) | max rel diff {rel:.1e}", flush=True)
    write_results(results, args.out)


if __name__ == "__main__":
    main()
