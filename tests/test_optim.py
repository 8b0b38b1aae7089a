"""SAM / ASAM (alstudy.optim.SAM) against closed forms on quadratics, and end to end in fit."""

import numpy as np
import pytest
import torch
from torch import nn

from alstudy import models
from alstudy.optim import SAM
from alstudy.train import TrainConfig, fit


def _problem(seed=0, d=5):
    """A quadratic L(w) = ½ wᵀAw − bᵀw split over two tensors (w1: [3], w2: [2])."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(d, d))
    a = m @ m.T + d * np.eye(d)  # SPD
    b = rng.normal(size=d)
    w0 = rng.normal(size=d)
    return a, b, w0


def _loss(params, a, b):
    w = torch.cat([p.flatten() for p in params])
    at, bt = torch.as_tensor(a), torch.as_tensor(b)
    return 0.5 * w @ at @ w - bt @ w


def _sam_update(opt, params, a, b):
    opt.zero_grad()
    _loss(params, a, b).backward()
    opt.first_step(zero_grad=True)
    _loss(params, a, b).backward()
    opt.second_step(zero_grad=True)


def _closed_form(a, b, w, rho, lr, t):
    """w' = w − lr ∇L(w + ε), ε = ρ T² g / ‖T g‖, ∇L(w) = A w − b (numpy, float64)."""
    g = a @ w - b
    eps = rho * t * t * g / np.linalg.norm(t * g)
    return w - lr * (a @ (w + eps) - b)


def _params(w0):
    return [torch.tensor(w0[:3], requires_grad=True), torch.tensor(w0[3:], requires_grad=True)]


@pytest.mark.parametrize("rho", [0.0, 0.05, 0.7])
def test_sam_step_equals_closed_form(rho):
    a, b, w0 = _problem()
    params = _params(w0)
    opt = SAM(params, torch.optim.SGD, rho=rho, lr=0.1, momentum=0.0)
    _sam_update(opt, params, a, b)
    got = torch.cat([p.detach() for p in params]).numpy()
    np.testing.assert_allclose(got, _closed_form(a, b, w0, rho, 0.1, np.ones(5)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.01, 0.5])
def test_asam_step_equals_closed_form(eta):
    a, b, w0 = _problem(1)
    params = _params(w0)
    opt = SAM(params, torch.optim.SGD, rho=0.3, adaptive=True, eta=eta, lr=0.05, momentum=0.0)
    _sam_update(opt, params, a, b)
    got = torch.cat([p.detach() for p in params]).numpy()
    np.testing.assert_allclose(got, _closed_form(a, b, w0, 0.3, 0.05, np.abs(w0) + eta), rtol=1e-12)


def test_asam_weights_scope_leaves_biases_unscaled():
    """Kwon et al.'s convention: T = |w| + η for 'weight' tensors, T = 1 for the others."""
    a, b, w0 = _problem(2)
    weight = nn.Parameter(torch.tensor(w0[:3]))
    bias = nn.Parameter(torch.tensor(w0[3:]))
    opt = SAM([("lin.weight", weight), ("lin.bias", bias)], torch.optim.SGD, rho=0.2,
              adaptive=True, eta=0.01, adaptive_scope="weights", lr=0.1)
    _sam_update(opt, [weight, bias], a, b)
    t = np.concatenate([np.abs(w0[:3]) + 0.01, np.ones(2)])
    got = torch.cat([weight.detach(), bias.detach()]).numpy()
    np.testing.assert_allclose(got, _closed_form(a, b, w0, 0.2, 0.1, t), rtol=1e-12)


def test_sam_with_adam_base_equals_adam_on_the_perturbed_gradient():
    a, b, w0 = _problem(3)
    params = _params(w0)
    opt = SAM(params, torch.optim.Adam, rho=0.1, lr=0.01)
    ref = [p.detach().clone().requires_grad_(True) for p in params]
    ref_opt = torch.optim.Adam(ref, lr=0.01)
    for _ in range(3):
        _sam_update(opt, params, a, b)
        # reference: gradient of L at w + ρ g/‖g‖ computed by hand, fed to a plain Adam
        w = torch.cat([p.detach() for p in ref]).numpy()
        g = a @ w - b
        g_pert = a @ (w + 0.1 * g / np.linalg.norm(g)) - b
        ref[0].grad, ref[1].grad = torch.tensor(g_pert[:3]), torch.tensor(g_pert[3:])
        ref_opt.step()
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-12, atol=1e-12)


def test_closure_step_matches_two_step_api():
    a, b, w0 = _problem(4)
    p1, p2 = _params(w0), _params(w0)
    o1 = SAM(p1, torch.optim.SGD, rho=0.2, lr=0.1, momentum=0.9)
    o2 = SAM(p2, torch.optim.SGD, rho=0.2, lr=0.1, momentum=0.9)
    for _ in range(3):
        _sam_update(o1, p1, a, b)
        o2.zero_grad()
        _loss(p2, a, b).backward()

        def closure():
            o2.zero_grad()
            loss = _loss(p2, a, b)
            loss.backward()
            return loss

        o2.step(closure)
    for x, y in zip(p1, p2):
        assert torch.equal(x.detach(), y.detach())


def test_second_step_restores_weights_exactly_before_the_base_step():
    a, b, w0 = _problem(5)
    params = _params(w0)
    opt = SAM(params, torch.optim.SGD, rho=0.5, adaptive=True, lr=0.0)
    before = [p.detach().clone() for p in params]
    _sam_update(opt, params, a, b)
    for p, q in zip(params, before):
        assert torch.equal(p.detach(), q)


def test_invalid_arguments_raise():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="rho"):
        SAM(p, torch.optim.SGD, rho=-0.1, lr=0.1)
    with pytest.raises(ValueError, match="eta"):
        SAM(p, torch.optim.SGD, adaptive=True, eta=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="adaptive_scope"):
        SAM(p, torch.optim.SGD, adaptive=True, adaptive_scope="biases", lr=0.1)
    with pytest.raises(ValueError, match="named_parameters"):
        SAM(p, torch.optim.SGD, adaptive=True, adaptive_scope="weights", lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        SAM(p, torch.optim.SGD, lr=0.1).step()


@pytest.mark.parametrize("optimizer,base", [("sam", "sgd"), ("asam", "adam")])
def test_fit_with_sam_decreases_the_loss(optimizer, base):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()
    torch.manual_seed(0)
    model = models.build("small_cnn", (1, 8, 8), 2, width=4, hidden=16)
    cfg = TrainConfig(epochs=12, batch_size=16, optimizer=optimizer, sam_base=base,
                      lr=0.05 if base == "sgd" else 0.01, sam_rho=0.05)
    hist = fit(model, x, y, cfg, generator=torch.Generator().manual_seed(1))
    assert hist["loss"][-1] < 0.7 * hist["loss"][0]
