"""Loss-surface toolkit: filter-normalized directions (Li et al., arXiv:1712.09913), 1-D/2-D surfaces with resume,
linear interpolation and barriers (Frankle et al. arXiv:1912.05671, Entezari et al. arXiv:2110.06296), BN reset
(Jordan et al. arXiv:2211.08403) and Git Re-Basin permutations (Ainsworth et al. arXiv:2209.04836)."""
import copy
import itertools
from unittest import mock

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.landscape.directions import direction_from_vector, random_direction, trainable_parameters
from shared.landscape.interpolate import interpolation_curve, loss_barrier, reset_bn_stats
from shared.landscape.permute import (activation_matching, apply_permutation, permutation_spec,
                                      random_permutation, weight_matching)
from shared.landscape.surface import (evaluate_loss, grid_from_csv, plot_1d, plot_contour, plot_surface_3d,
                                      read_rows, surface_1d, surface_2d)
from shared.models import create_model
from shared.models import vgg as vgg_module
from shared.models.vgg import VGG


def _vgg11_narrow() -> VGG:
    """VGG-11-BN at 1/8 width (the models' VGG has no width argument): same layer chain, 8-64 channels."""
    with mock.patch.dict(vgg_module.CONFIGS, {-11: [c if c == "M" else c // 8 for c in vgg_module.CONFIGS[11]]}):
        return VGG(-11)


# Small models covering every spec builder: MLP with BN, VGG-11-BN, ResNet-20 with option A / B shortcuts, plain.
MODELS = {
    "mlp": lambda: create_model("mlp", in_features=48, hidden=(24, 16), norm="batchnorm"),
    "vgg11_narrow": _vgg11_narrow,
    "resnet20_A": lambda: create_model("resnet20", width=0.5),
    "resnet20_B": lambda: create_model("resnet20", width=0.5, shortcut="B"),
    "plain20": lambda: create_model("resnet20", width=0.5, skip=False),
}
FULL_SIZE = {"vgg11_bn": lambda: create_model("vgg11_bn")}  # 9.2M params: too slow to match in a unit test


def _inputs(name: str, n: int, seed: int = 0) -> torch.Tensor:
    shape = (n, 3, 4, 4) if name == "mlp" else (n, 3, 32, 32)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _prepared(name: str, seed: int) -> nn.Module:
    """A model with random BN affine parameters and running statistics re-estimated on random inputs: permuting
    the buffers (or not) then changes the outputs, and no unit is dead on the test inputs."""
    model = {**MODELS, **FULL_SIZE}[name]()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    reset_bn_stats(model, [_inputs(name, 4, seed=seed + 100)])
    return model.eval()


def _classification_batches(n_batches=3, n=10, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)) for _ in range(n_batches)]


def _small_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4)).eval()


# ---- directions ----

@pytest.mark.parametrize("name", ["mlp", "resnet20_A"])
def test_filter_normalized_direction_has_weight_filter_norms(name):
    model = MODELS[name]()
    d = random_direction(model, generator=torch.Generator().manual_seed(0))
    weights = trainable_parameters(model)
    assert list(d) == list(weights)
    for key, w in weights.items():
        if w.dim() <= 1:  # biases and BN scales/shifts: zero direction (Li et al.'s "biasbn")
            assert torch.count_nonzero(d[key]) == 0, key
            continue
        # ||d_{i,j}|| = ||theta_{i,j}|| for every filter j (dim-0 slice)
        torch.testing.assert_close(d[key].flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1),
                                   rtol=1e-5, atol=1e-6)
        cosine = F.cosine_similarity(d[key].flatten(), w.detach().flatten(), dim=0)
        assert cosine.abs() < 0.5, key  # a random direction, not a rescaled copy of the weights
    again = random_direction(model, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(again[k], d[k]) for k in d)


def test_direction_from_flat_vector_splits_in_parameter_order():
    model = _small_mlp()
    flat = torch.randn(sum(p.numel() for p in model.parameters()))
    d = direction_from_vector(model, flat)
    torch.testing.assert_close(torch.cat([d[k].flatten() for k in d]), flat, rtol=0, atol=0)
    assert [tuple(t.shape) for t in d.values()] == [tuple(p.shape) for p in model.parameters()]


# ---- surfaces ----

def test_surface_origin_equals_model_loss_and_weights_restored():
    model, batches = _small_mlp(), _classification_batches()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = evaluate_loss(model, batches)
    g = torch.Generator().manual_seed(1)
    dx, dy = random_direction(model, generator=g), random_direction(model, generator=g)
    grid = surface_2d(model, dx, dy, [-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0], batches)
    assert grid["loss"][1, 1] == expected["loss"] and grid["accuracy"][1, 1] == expected["accuracy"]
    assert grid["loss"][0, 0] != expected["loss"]  # other grid points really moved the weights
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the loss really is the size-weighted mean: recompute by hand over the concatenated data
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        assert expected["loss"] == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-6)


def test_surface_1d_of_quadratic_model_is_the_parabola():
    """L(w) = mean((x.w - y)^2); along d: L(a) = mean(r^2) + 2a mean(r Xd) + a^2 mean((Xd)^2), r = Xw - y."""
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False).double()
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64))
               for n in (7, 3, 5)]  # unequal batch sizes: the mean must weight by size
    loss_fn = lambda out, y: F.mse_loss(out.squeeze(-1), y)  # noqa: E731
    d = random_direction(model, generator=torch.Generator().manual_seed(3))
    alphas = [-2.0, -0.5, 0.0, 0.25, 1.0, 3.0]
    curve = surface_1d(model, d, alphas, batches, loss_fn=loss_fn)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    w, dw = model.weight.detach()[0], d["weight"][0]
    r, xd = x @ w - y, x @ dw
    c0, c1, c2 = (r ** 2).mean(), 2 * (r * xd).mean(), (xd ** 2).mean()
    expected = [float(c0 + c1 * a + c2 * a * a) for a in alphas]
    assert curve["loss"].tolist() == pytest.approx(expected, rel=1e-12)
    assert all(a != a for a in curve["accuracy"])  # regression: accuracy undefined (NaN)
    # along a unit Hessian eigenvector v (H = 2 X^T X / N, eigh by hand): L(a) = L(0) + a g.v + lambda a^2 / 2
    eigenvalues, eigenvectors = torch.linalg.eigh(2 * x.T @ x / len(x))
    v, lam = eigenvectors[:, -1], eigenvalues[-1]
    curve = surface_1d(model, direction_from_vector(model, v), alphas, batches, loss_fn=loss_fn)
    grad_v = 2 * (r * (x @ v)).mean()
    expected = [float(c0 + grad_v * a + lam * a * a / 2) for a in alphas]
    assert curve["loss"].tolist() == pytest.approx(expected, rel=1e-10)


def test_surface_resume_skips_existing_grid_points(tmp_path):
    model, batches = _small_mlp(), _classification_batches()
    g = torch.Generator().manual_seed(4)
    dx, dy = random_direction(model, generator=g), random_direction(model, generator=g)
    xs, ys = [-1.0, 0.0, 1.0], [-0.5, 0.5]
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    path = tmp_path / "surface.csv"
    surface_2d(model, dx, dy, xs[:2], ys, batches, csv_path=path)  # a job killed after 4 of 6 points
    assert len(calls) == 4 * len(batches) and len(read_rows(path)) == 4
    calls.clear()
    full = surface_2d(model, dx, dy, xs, ys, batches, csv_path=path)
    assert len(calls) == 2 * len(batches)  # only the 2 missing points were evaluated
    rows = read_rows(path)
    assert len(rows) == 6 and len({(r["x"], r["y"]) for r in rows}) == 6
    fresh = surface_2d(model, dx, dy, xs, ys, batches)  # no CSV: everything recomputed
    # a job killed while writing its last row: that row is dropped and recomputed, not read half-written
    path.write_text(path.read_text()[:-3])
    calls.clear()
    assert surface_2d(model, dx, dy, xs, ys, batches, csv_path=path)["loss"].tolist() == fresh["loss"].tolist()
    assert len(calls) == len(batches) and len(read_rows(path)) == 6
    assert full["loss"].tolist() == fresh["loss"].tolist()
    assert grid_from_csv(path)["loss"].tolist() == fresh["loss"].tolist()
    for plot, arg in ((plot_contour, fresh), (plot_surface_3d, fresh),
                      (plot_1d, surface_1d(model, dx, xs, batches))):
        assert plot(arg, tmp_path / f"{plot.__name__}.png").stat().st_size > 0


# ---- interpolation, barrier, BN reset ----

def test_interpolation_endpoints_reproduce_both_losses():
    model_a, model_b, batches = _small_mlp(0), _small_mlp(1), _classification_batches()
    curve = interpolation_curve(model_a, model_a.state_dict(), model_b.state_dict(), [0.0, 0.3, 1.0], batches)
    assert curve["loss"][0] == evaluate_loss(model_a, batches)["loss"]
    assert curve["loss"][-1] == evaluate_loss(model_b, batches)["loss"]
    assert curve["accuracy"][-1] == evaluate_loss(model_b, batches)["accuracy"]
    assert curve["loss"][1] not in (curve["loss"][0], curve["loss"][-1])


def test_barrier_is_zero_for_identical_models_and_matches_hand_value():
    model, batches = _small_mlp(), _classification_batches()
    curve = interpolation_curve(model, model.state_dict(), copy.deepcopy(model).state_dict(),
                                [0.0, 0.25, 0.5, 0.75, 1.0], batches, bn_batches=batches[:1])
    assert curve["loss_barrier"] == 0.0 and curve["error_barrier"] == 0.0
    # L = [1, 3, 2] at alpha [0, .5, 1]: 3 - (0.5 * 1 + 0.5 * 2) = 1.5
    assert loss_barrier([0.0, 0.5, 1.0], [1.0, 3.0, 2.0]) == 1.5
    assert loss_barrier([0.0, 0.5, 1.0], [1.0, 1.0, 3.0]) == 0.0  # below the chord: max at the endpoints


def test_reset_bn_stats_gives_exact_batch_statistics():
    model = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3, momentum=0.3), nn.Flatten(),
                          nn.Linear(12, 2), nn.BatchNorm1d(2)).eval()
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(4, 2, 2, 2, generator=g) for _ in range(2)]
    # Expected, by hand: per-batch mean and unbiased variance of each BN's input, averaged over the two batches
    # (momentum=None cumulative average). BN1's input is the conv output; BN2's input uses BN1 in train mode.
    w = model[0].weight.detach()[:, :, 0, 0]
    conv_out = [torch.einsum("oc,nchw->nohw", w, x) for x in batches]
    mean1 = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv_out]).mean(0)
    var1 = torch.stack([c.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for c in conv_out]).mean(0)
    normed = [(c - c.mean(dim=(0, 2, 3), keepdim=True)) / (c.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
                                                             + 1e-5).sqrt() for c in conv_out]
    lin = [model[3](n.flatten(1)).detach() for n in normed]
    mean2 = torch.stack([h.mean(0) for h in lin]).mean(0)
    var2 = torch.stack([h.var(0, unbiased=True) for h in lin]).mean(0)
    assert reset_bn_stats(model, batches) == 2
    torch.testing.assert_close(model[1].running_mean, mean1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var, var1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[4].running_mean, mean2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[4].running_var, var2, rtol=1e-5, atol=1e-5)
    assert not model.training and model[1].momentum == 0.3 and model[4].momentum == 0.1
    # equal batch sizes: the running mean is the exact mean over the whole constructed dataset
    torch.testing.assert_close(model[1].running_mean, torch.cat(conv_out).mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)


# ---- permutations (Git Re-Basin) ----

def _permuted_copy(model: nn.Module, seed: int):
    spec = permutation_spec(model)
    permuted = copy.deepcopy(model)
    permuted.load_state_dict(apply_permutation(spec, random_permutation(spec, torch.Generator().manual_seed(seed)),
                                               model.state_dict()))
    return spec, permuted


@pytest.mark.parametrize("name", [*MODELS, *FULL_SIZE])
def test_permuted_copy_computes_the_same_function(name):
    model = _prepared(name, seed=0)
    spec, permuted = _permuted_copy(model, seed=1)
    changed = [k for k, v in permuted.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert len(changed) > len(spec.sizes)  # weights, biases, BN params and buffers all moved
    x = _inputs(name, 4)
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_weight_matching_aligns_permuted_copy_exactly(name):
    model = _prepared(name, seed=0)
    spec, permuted = _permuted_copy(model, seed=1)
    state = model.state_dict()
    found = weight_matching(spec, state, permuted.state_dict())
    aligned = apply_permutation(spec, found, permuted.state_dict())
    assert all(torch.equal(aligned[k], v) for k, v in state.items())
    # the aligned pair has zero barrier (a flat path); along the unaligned pair the loss does change
    batches = [(_inputs(name, 4), torch.arange(4))]
    alphas = [0.0, 0.5, 1.0]
    aligned_curve = interpolation_curve(model, state, aligned, alphas, batches)
    assert aligned_curve["loss_barrier"] == 0.0 and len(set(aligned_curve["loss"].tolist())) == 1
    naive_curve = interpolation_curve(model, state, permuted.state_dict(), alphas, batches)
    assert naive_curve["loss"][1] != naive_curve["loss"][0]


@pytest.mark.parametrize("name", ["mlp", "vgg11_narrow", "resnet20_A"])
def test_activation_matching_recovers_permutation(name):
    model = _prepared(name, seed=2)
    spec, permuted = _permuted_copy(model, seed=3)
    found = activation_matching(spec, model, permuted, [(_inputs(name, 16, seed=4), None)])
    aligned = apply_permutation(spec, found, permuted.state_dict())
    assert all(torch.equal(aligned[k], v) for k, v in model.state_dict().items())


def test_weight_matching_one_hidden_layer_is_the_brute_force_optimum():
    """One permutation: one assignment problem solves Alg. 1 exactly; compare with all 5! permutations."""
    torch.manual_seed(6)
    model_a = create_model("mlp", in_features=4, hidden=(5,), num_classes=3)
    model_b = create_model("mlp", in_features=4, hidden=(5,), num_classes=3)
    spec = permutation_spec(model_a)
    sa, sb = model_a.state_dict(), model_b.state_dict()

    def similarity(perm):  # sum_l <W_l^A, pi(W^B)_l>_F
        pb = apply_permutation(spec, {"P_net.1": torch.tensor(perm)}, sb)
        return sum(float((sa[k] * pb[k]).sum()) for k in sa)

    best = max(itertools.permutations(range(5)), key=similarity)
    found = weight_matching(spec, sa, sb)["P_net.1"]
    assert similarity(found.tolist()) == pytest.approx(similarity(best), rel=1e-9)
    assert found.tolist() == list(best)


def test_permutation_spec_rejects_unsupported_models():
    with pytest.raises(ValueError, match="supported: .*CifarResNet"):
        permutation_spec(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="GroupNorm"):
        permutation_spec(create_model("resnet20", width=2.0, norm="groupnorm"))
