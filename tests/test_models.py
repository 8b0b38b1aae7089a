"""Model contract: T = g ∘ f, registry, shapes and the paper's CNN layout."""

import pytest
import torch
from torch import nn

from alstudy import models


@pytest.mark.parametrize("name,shape,outputs,opts", [
    ("small_cnn", (1, 28, 28), 10, {}),
    ("small_cnn", (1, 8, 8), 10, {}),
    ("vgg16", (3, 32, 32), 10, {"width": 8}),
    ("vgg16", (1, 28, 28), 10, {"width": 8}),
    ("resnet18", (3, 32, 32), 100, {"width": 8}),
    ("resnet18", (1, 28, 28), 10, {"width": 8}),
    ("mlp", (30,), 1, {"hidden": 16}),
])
def test_forward_is_head_of_features(name, shape, outputs, opts):
    torch.manual_seed(0)
    model = models.build(name, shape, outputs, **opts).eval()
    x = torch.randn(3, *shape)
    z = model.features(x)
    assert z.shape == (3, model.feature_dim)
    expected = model.head(z)
    out = model(x)
    if model.task == "regression":
        assert out.shape == (3,) and torch.allclose(out, expected.squeeze(-1))
    else:
        assert out.shape == (3, outputs) and torch.allclose(out, expected)
    out2, blocks = model.intermediates(x)
    assert torch.allclose(out2, out, atol=1e-6) and len(blocks) >= 1


def test_small_cnn_matches_paper_table1():
    model = models.build("small_cnn", (1, 28, 28), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 32, (5, 5)), (32, 64, (5, 5))]
    assert [(l.in_features, l.out_features) for l in linears] == [(1024, 128), (128, 10)]
    assert linears[-1] is model.head[-1]


# NoiseStability, Appendix A.3, Table 1 "The network architecture for MNIST classification":
# layer, number of channels, spatial size (the two Linear rows give in/out features)
TABLE_1 = [
    ("Conv2d", (1, 32, 5), 32, (24, 24)),
    ("MaxPool2d", None, 32, (12, 12)),
    ("ReLU", None, 32, (12, 12)),
    ("Conv2d", (32, 64, 5), 64, (8, 8)),
    ("MaxPool2d", None, 64, (4, 4)),
    ("ReLU", None, 64, (4, 4)),
    ("Linear", (1024, 128), 128, ()),
    ("Linear", (128, 10), 10, ()),
]


def executed_layers(model, x):
    """(layer, arguments, channels, spatial size) of every leaf module a forward pass runs, in
    order; reshapes (Flatten) and no-ops (Identity, Dropout) are left out as in Table 1."""
    rows, handles = [], []

    def hook(m, inputs, out):
        if isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
            return
        args = None
        if isinstance(m, nn.Conv2d):
            args = (m.in_channels, m.out_channels, m.kernel_size[0])
        elif isinstance(m, nn.Linear):
            args = (m.in_features, m.out_features)
        rows.append((type(m).__name__, args, out.shape[1], tuple(out.shape[2:])))

    for m in model.modules():
        if not list(m.children()):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return rows


def test_small_cnn_layer_sequence_is_paper_table1():
    model = models.build("small_cnn", (1, 28, 28), 10).eval()
    assert executed_layers(model, torch.randn(2, 1, 28, 28)) == TABLE_1
    # f ends at Linear(1024, 128) itself: the features are not rectified
    torch.manual_seed(0)
    z = model.features(torch.randn(16, 1, 28, 28))
    assert z.shape == (16, 128) and bool((z < 0).any())
    assert executed_layers(models.build("small_cnn", (1, 28, 28), 10, dropout=0.5).eval(),
                           torch.randn(2, 1, 28, 28)) == TABLE_1


def test_small_cnn_hidden_relu_is_an_explicit_option():
    assert models.model_options("small_cnn")["hidden_relu"] is False
    model = models.build("small_cnn", (1, 28, 28), 10, hidden_relu=True).eval()
    rows = executed_layers(model, torch.randn(2, 1, 28, 28))
    assert rows == TABLE_1[:7] + [("ReLU", None, 128, ())] + TABLE_1[7:]
    assert bool((model.features(torch.randn(8, 1, 28, 28)) >= 0).all())


def test_feature_parameters_exclude_head():
    model = models.build("small_cnn", (1, 28, 28), 10)
    feats = models.feature_parameters(model)
    head_ids = {id(p) for p in model.head.parameters()}
    assert feats and not any(id(p) in head_ids for p in feats.values())
    assert len(feats) + len(head_ids) == len(list(model.parameters()))


def test_width_makes_narrow_models():
    wide = sum(p.numel() for p in models.build("resnet18", (3, 32, 32), 10).parameters())
    narrow = sum(p.numel() for p in models.build("resnet18", (3, 32, 32), 10, width=16).parameters())
    assert narrow < wide / 10


def test_unknown_model_or_option_is_a_clear_error():
    with pytest.raises(ValueError, match="available models"):
        models.build("resnet50", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="widht"):
        models.build("resnet18", (3, 32, 32), 10, widht=8)
