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

3. VAAL, SRAAL and the GCN strategies on the MNIST ``ns_classification`` CPU setting (4,000
   pool images of 1×28×28, the labeled sizes 20–100 of the five acquisition cycles, batch 64):
   CPU seconds per VAAL iteration split into its VAE updates, discriminator update and the rest
   (solved from runs with (VAE, D) updates per iteration = (2, 1), (1, 1), (1, 2)); floating
   point operations per iteration (``torch.utils.flop_counter``) against the one-thread matmul
   rate; cost against batch size and image size (3×32×32 as for CIFAR/SVHN); two exact
   re-implementations (channels-last memory format; labeled and unlabeled batches through one
   forward with per-group BatchNorm) against the shipped one; SRAAL's iteration; and the
   projected selection seconds per cycle and per five-cycle unit at 150, 300 and 1,150
   iterations (1,150 ≈ the NoiseStability authors' 100 epochs over labeled + 1,000 candidates
   at batch 96). Times are CPU time of this process (``time.process_time``), the minimum over
   ``--repeats`` after a discarded warm-up, so that other processes on a shared machine inflate
   them less than wall time; ``--vaal-unit`` also runs one whole VAAL unit of the CPU preset
   with 1,000 candidates (wall and per-cycle seconds).

Usage: .venv/bin/python benchmarks/bench_baselines.py [--threads 1] [--repeats 2]
       [--sections mc_dropout,badge,vaal] [--vaal-unit]
Writes benchmarks/results/baselines.json (a run of some sections replaces only those). All
ratios are measured within one run.
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


# --------------------------------------------------------------------------- VAAL, SRAAL, GCN
PAPER_STEPS = 1150  # ≈ 100 epochs over (labeled + 1,000 candidates) / batch 96, NS authors' MNIST config
LABELED = (20, 40, 60, 80, 100)  # labeled-set sizes at the five acquisitions of the CPU preset


def _cpu_best(fn, repeats):
    """Minimum CPU time of ``fn()`` over ``repeats`` calls after one discarded warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _vaal_iteration_s(x_lab, x_unl, repeats, steps=20, batch=64, vae_steps=2, adv_steps=1,
                      vae_cls=None, width=32):
    """CPU seconds per VAAL iteration (fresh networks, ``steps`` iterations per measurement)."""
    from alstudy.strategies.vaal import VAE, Discriminator, train_vaal

    def run():
        torch.manual_seed(0)
        vae = (vae_cls or VAE)(tuple(x_lab.shape[1:]), 32, "conv", width)
        if vae_cls is not None:
            vae = vae.to(memory_format=torch.channels_last)
        train_vaal(vae, Discriminator(32, 512), x_lab, x_unl, steps=steps, batch_size=batch,
                   vae_steps=vae_steps, adv_steps=adv_steps, generator=torch.Generator().manual_seed(0))

    return _cpu_best(run, repeats) / steps


def _channels_last_vae():
    """VAAL's VAE run in the channels-last memory format (same parameters, same function)."""
    from alstudy.strategies.vaal import VAE

    class ChannelsLastVAE(VAE):
        def encode(self, x):
            h = self.encoder(x.contiguous(memory_format=torch.channels_last))
            return self.mu(h), self.logvar(h)

        def decode(self, z):
            h = self.decoder[1](self.decoder[0](z[:, : self.decode_dims]))
            h = h.contiguous(memory_format=torch.channels_last)
            for m in list(self.decoder)[2:]:
                h = m(h)
            return h

    return ChannelsLastVAE


def _vae_update_s(x_l, x_u, repeats, fused, n=20):
    """CPU seconds of one VAAL VAE update (L and U batches, Eq. 3 loss, backward, Adam step):
    two forwards (shipped) or one forward of the concatenated batches with BatchNorm applied to
    each group (same function). Also returns the first update's loss."""
    import torch.nn.functional as F
    from torch import nn

    from alstudy.strategies.vaal import VAE, Discriminator, _elbo_terms

    sizes = [x_l.shape[0], x_u.shape[0]]

    def grouped(seq, h):
        for m in seq:
            h = torch.cat([m(p) for p in h.split(sizes)]) if isinstance(m, nn.BatchNorm2d) else m(h)
        return h

    def update(vae, disc, opt):
        if fused:
            h = grouped(vae.encoder, torch.cat([x_l, x_u]))
            mu, logvar = vae.mu(h), vae.logvar(h)
            noise = torch.cat([torch.randn_like(p) for p in mu.split(sizes)])  # same draws
            rec = grouped(vae.decoder, mu + noise * torch.exp(0.5 * logvar))
            (r_l, r_u), (m_l, m_u), (v_l, v_u) = rec.split(sizes), mu.split(sizes), logvar.split(sizes)
        else:
            r_l, m_l, v_l = vae(x_l)
            r_u, m_u, v_u = vae(x_u)
        a, b = _elbo_terms(x_l, r_l, m_l, v_l), _elbo_terms(x_u, r_u, m_u, v_u)
        d_l, d_u = disc(m_l), disc(m_u)
        loss = a[0] + b[0] + a[1] + b[1] + F.binary_cross_entropy_with_logits(
            d_l, torch.ones_like(d_l)) + F.binary_cross_entropy_with_logits(d_u, torch.ones_like(d_u))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    first = []

    def run():
        torch.manual_seed(0)
        vae, disc = VAE(tuple(x_l.shape[1:]), 32, "conv", 32).train(), Discriminator(32, 512)
        opt = torch.optim.Adam(vae.parameters(), lr=5e-4)
        torch.manual_seed(1)
        losses = [update(vae, disc, opt) for _ in range(n)]
        first.append(losses[0])

    return _cpu_best(run, repeats) / n, first[-1]


def _matmul_gflops(repeats):
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return 2 * 1024**3 * 10 / _cpu_best(lambda: [a @ b for _ in range(10)], repeats) / 1e9


def _vaal_unit(repeats_unused=None):
    """One whole VAAL unit of the MNIST CPU preset with 1,000 candidates (its VAAL options)."""
    import tempfile

    import yaml

    from alstudy import data, loop, notebooks, params, strategies

    defaults = notebooks.parameters(os.path.join(ROOT, "notebooks", "ns_classification.ipynb"))
    with open(os.path.join(ROOT, "params", "ns_classification.cpu.yaml")) as f:
        preset = yaml.safe_load(f)
    opts = preset.get("strategy_options", {}).get("vaal", {})
    with tempfile.TemporaryDirectory() as tmp:
        p = params.validate({**defaults, **preset, "strategies": ["vaal"], "seeds": [0],
                             "candidates": 1000, "results_dir": tmp, "progress": False})
        ds = data.load(p["dataset"], max_train=p["max_train"], max_test=p["max_test"])
        t0, c0 = time.perf_counter(), time.process_time()
        m, _ = loop.run_unit(p, ds, "vaal", strategies.build("vaal", **opts), 0, torch.device("cpu"))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per = m[m.metric.isin(["train_seconds", "select_seconds"])]
    return {"case": "vaal unit, MNIST CPU preset, 1,000 candidates", "vaal_options": opts,
            "wall_s": wall, "cpu_s": cpu,
            "train_s_per_cycle": per[per.metric == "train_seconds"].value.round(2).tolist(),
            "select_s_per_cycle": per[per.metric == "select_seconds"].value.round(2).tolist()}


def bench_vaal(repeats, unit=False):
    """Where a VAAL cycle's time goes, and what VAAL, SRAAL and the GCNs cost per unit."""
    from torch.utils.flop_counter import FlopCounterMode

    from alstudy import data, models
    from alstudy.pool import Pool
    from alstudy.strategies import build
    from alstudy.strategies.sraal import train_sraal
    from alstudy.strategies.vaal import VAE, Discriminator, train_vaal

    ds = data.load("mnist")
    x = ds.x_train  # [4000, 1, 28, 28]
    out = {"workload": "MNIST 4,000 x 1x28x28, labeled = first L images, unlabeled = the rest, "
                       "VAAL defaults (width 32, latent 32, D 512-512, batch 64)",
           "timer": "process_time, min over repeats after a warm-up"}
    # phases at L = 60: t(v, a) = rest + v * vae_update + a * d_update
    lab, unl = x[:60], x[60:]
    t21 = _vaal_iteration_s(lab, unl, repeats)
    t11 = _vaal_iteration_s(lab, unl, repeats, vae_steps=1)
    t12 = _vaal_iteration_s(lab, unl, repeats, vae_steps=1, adv_steps=2)
    vae_u, d_u = t21 - t11, t12 - t11
    out["phases_L60"] = {"iteration_s": t21, "vae_update_s": vae_u, "discriminator_update_s": d_u,
                         "rest_s": t11 - vae_u - d_u, "vae_share": 2 * vae_u / t21}
    with FlopCounterMode(display=False) as fc:
        torch.manual_seed(0)
        train_vaal(VAE((1, 28, 28)), Discriminator(), lab, unl, steps=1,
                   generator=torch.Generator().manual_seed(0))
    flops = fc.get_total_flops()
    peak = _matmul_gflops(repeats)
    out["flops_L60"] = {"gflop_per_iteration": flops / 1e9, "achieved_gflops": flops / t21 / 1e9,
                        "matmul_1024_gflops": peak, "fraction_of_matmul_rate": flops / t21 / 1e9 / peak,
                        "by_op_gflop": {str(k): v / 1e9 for k, v in
                                        fc.get_flop_counts()["Global"].items()}}
    print(json.dumps({k: out[k] for k in ("phases_L60", "flops_L60")}))
    # batch size (L = 100) and image size (L = 60)
    out["batch_size_L100"] = {str(b): _vaal_iteration_s(x[:100], x[100:], repeats, batch=b)
                              for b in (32, 64, 96)}
    g = torch.Generator().manual_seed(0)
    x32 = torch.rand(4000, 3, 32, 32, generator=g)
    out["image_3x32x32_L60_iteration_s"] = _vaal_iteration_s(x32[:60], x32[60:], repeats)
    out["image_1x28x28_L60_iteration_s"] = t21
    # exact alternatives to the shipped implementation
    t_cl = _vaal_iteration_s(lab, unl, repeats, vae_cls=_channels_last_vae())
    xs_l, xs_u = x[:60], x[60:124]
    sep, loss_sep = _vae_update_s(xs_l, xs_u, repeats, fused=False)
    fus, loss_fus = _vae_update_s(xs_l, xs_u, repeats, fused=True)
    out["alternatives"] = {"channels_last_iteration_s": t_cl, "speedup_channels_last": t21 / t_cl,
                           "vae_update_two_forwards_s": sep, "vae_update_one_forward_s": fus,
                           "speedup_one_forward": sep / fus,
                           "first_loss_abs_diff_one_vs_two_forwards": abs(loss_sep - loss_fus)}
    print(json.dumps(out["alternatives"]))
    # per-cycle and per-unit projection on the CPU preset (labeled batch = min(64, L))
    per_l = {L: (t21 if L == 60 else _vaal_iteration_s(x[:L], x[L:], repeats)) for L in LABELED}
    out["vaal_iteration_s_by_labeled"] = {str(L): t for L, t in per_l.items()}
    out["vaal_projection"] = {str(steps): {"cycle_s_L20": steps * per_l[20], "cycle_s_L100": steps * per_l[100],
                                           "unit_s": steps * sum(per_l.values()),
                                           "fraction_of_paper_steps": steps / PAPER_STEPS}
                              for steps in (150, 300, PAPER_STEPS)}
    print(json.dumps(out["vaal_projection"]))

    # SRAAL iteration with its default networks, L = 60
    def sraal_run(steps=20):
        from torch import nn

        torch.manual_seed(0)
        vae = VAE((1, 28, 28), 32, "conv", 32, decode_dims=16)
        clf = nn.Sequential(nn.Linear(16, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(),
                            nn.Linear(256, 10))
        train_sraal(vae, Discriminator(32, 512, 4), clf, lab, ds.y_train[:60], unl,
                    torch.rand(unl.shape[0], generator=torch.Generator().manual_seed(0)),
                    steps=steps, generator=torch.Generator().manual_seed(0))
    t_sraal = _cpu_best(sraal_run, repeats) / 20
    out["sraal_iteration_s_L60"] = t_sraal
    out["sraal_over_vaal_iteration"] = t_sraal / t21
    # GCN strategies: one selection, 1,000 candidates + 100 labeled, untrained small CNN
    torch.manual_seed(0)
    model = models.build("small_cnn", (1, 28, 28), 10, dropout=0.5).eval()
    pool = Pool(ds.n_train, torch.arange(100))
    for name in ("coregcn", "uncertaingcn"):
        s = build(name, candidates=1000)
        out[f"{name}_select_s"] = _cpu_best(
            lambda: s.select(model, ds, pool, 20, torch.Generator().manual_seed(0)), repeats)
    print(json.dumps({k: out[k] for k in ("sraal_iteration_s_L60", "coregcn_select_s",
                                          "uncertaingcn_select_s")}))
    if unit:
        out["unit"] = _vaal_unit()
        print(json.dumps(out["unit"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sections", default="mc_dropout,badge,vaal")
    ap.add_argument("--vaal-unit", action="store_true")
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        mode, n, c, d, budget, first = args.child
        badge_child(mode, int(n), int(c), int(d), int(budget), first)
        return
    sections = args.sections.split(",")
    unknown = set(sections) - {"mc_dropout", "badge", "vaal"}
    if unknown:
        raise SystemExit(f"unknown --sections {sorted(unknown)}; allowed: mc_dropout, badge, vaal")
    path = os.path.join(HERE, "results", "baselines.json")
    result = {}
    if os.path.exists(path):
        with open(path) as f:
            result = json.load(f)
    meta = {"threads": args.threads, "repeats": args.repeats,
            "load_average_1min_at_start": os.getloadavg()[0], "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count()}
    result["benchmark"] = "baselines"
    if "mc_dropout" in sections:
        result.update(meta, mc_dropout=bench_mc_dropout(args.repeats))
    if "badge" in sections:
        result.update(meta, badge=bench_badge(args.threads))
    if "vaal" in sections:
        vaal = bench_vaal(args.repeats, args.vaal_unit)
        vaal["run"] = {**meta, "load_average_1min_at_end": os.getloadavg()[0]}
        result["vaal"] = vaal
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
