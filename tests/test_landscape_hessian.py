"""shared.landscape curvature tools (HVP, Lanczos, power iteration, Hutchinson, SLQ, gradient overlap) against exact
Hessians from torch.autograd.functional.hessian / torch.linalg.eigh, and against PyHessian (arXiv:1912.07145)."""
import math
import warnings

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from shared.landscape import (HVPOperator, curvature_params, flatten, gaussian_density, gradient_overlap,
                              hessian_density, hessian_eigs, hessian_trace, hutchinson_trace, lanczos, make_hvp,
                              matrix_hvp, power_iteration, slq, subset_loss_and_grad, subspace_overlap,
                              subspaces_overlap, top_eigenpairs, unflatten)
from shared.models import create_model

N_EXAMPLES, N_IN, N_HIDDEN, N_CLASSES = 20, 6, 5, 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Thousands of tiny products: with 2 intra-op threads on a busy 2-core machine each costs ~10x more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_bn_mlp(dtype=torch.float64) -> nn.Module:
    """Linear-BN-tanh-Linear with non-trivial BN running statistics, left in train mode (as during training)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(N_IN, N_HIDDEN), nn.BatchNorm1d(N_HIDDEN), nn.Tanh(),
                          nn.Linear(N_HIDDEN, N_CLASSES)).to(dtype)
    with torch.no_grad():
        model(2 * torch.randn(64, N_IN, dtype=dtype) + 1)  # running mean/var away from 0/1
    return model


def _data(dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N_EXAMPLES, N_IN, generator=gen, dtype=dtype)
    y = torch.randint(0, N_CLASSES, (N_EXAMPLES,), generator=gen)
    return x, y


def _batches(x, y, cuts=(8, 16)):
    """Unequal batches (8, 8, 4): the subset loss must weight them by size to equal the mean over all examples."""
    bounds = [0, *cuts, len(x)]
    return [(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _exact_hessian_and_grad(model, loss_fn, x, y):
    """H and g of the mean loss over all examples, model in eval mode, by torch.autograd.functional.hessian."""
    names = [n for n, p in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    was_training = model.training
    model.eval()

    def loss_of(w):
        return loss_fn(functional_call(model, dict(zip(names, unflatten(w, params))), (x,)), y)

    w0 = flatten(params)
    hessian = torch.autograd.functional.hessian(loss_of, w0)
    grad = torch.autograd.functional.jacobian(loss_of, w0)
    loss = loss_of(w0).item()
    model.train(was_training)
    return hessian, grad, loss


@pytest.fixture(scope="module")
def problem():
    model, loss_fn = _tiny_bn_mlp(), nn.CrossEntropyLoss()
    x, y = _data()
    hessian, grad, loss = _exact_hessian_and_grad(model, loss_fn, x, y)
    return dict(model=model, loss_fn=loss_fn, x=x, y=y, batches=_batches(x, y), H=hessian, g=grad, loss=loss)


def _known_spectrum_matrix(n=200, outliers=(10.0, 8.0, 6.0, 5.0, 4.0), seed=0):
    """Q diag(lambda) Q^T with a few outliers above a bulk in [-1, 1] (the shape Sagun et al. report)."""
    gen = torch.Generator().manual_seed(seed)
    bulk = torch.linspace(-1.0, 1.0, n - len(outliers), dtype=torch.float64)
    eigenvalues = torch.cat([torch.tensor(outliers, dtype=torch.float64), bulk])
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T, eigenvalues.sort(descending=True).values


# ---- Hessian-vector products -------------------------------------------------------------------------------------

def test_hvp_matches_exact_hessian(problem):
    model, hessian = problem["model"], problem["H"]
    running_mean = model[1].running_mean.clone()
    hvp = make_hvp(model, problem["loss_fn"], problem["batches"])
    v = torch.randn(hvp.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(hvp(v), hessian @ v, rtol=1e-10, atol=1e-12)
    # list-of-tensors input gives a list in the parameters' shapes
    as_list = hvp(unflatten(v, curvature_params(model)))
    assert [t.shape for t in as_list] == [p.shape for p in model.parameters()]
    torch.testing.assert_close(flatten(as_list), hessian @ v, rtol=1e-10, atol=1e-12)
    # curvature mode is undone and touches no BN statistics
    assert model.training and model[1].training
    torch.testing.assert_close(model[1].running_mean, running_mean, rtol=0, atol=0)


def test_hvp_independent_of_batching(problem):
    """BN in eval mode + size-weighted batches: the same subset split differently gives the same H v."""
    x, y = problem["x"], problem["y"]
    v = torch.randn(problem["H"].shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hv_one = make_hvp(problem["model"], problem["loss_fn"], [(x, y)])(v)
    hv_split = make_hvp(problem["model"], problem["loss_fn"], _batches(x, y, cuts=(3, 4, 11)))(v)
    torch.testing.assert_close(hv_split, hv_one, rtol=1e-10, atol=1e-12)


def test_subset_loss_and_grad_match_exact(problem):
    loss, grad = subset_loss_and_grad(problem["model"], problem["loss_fn"], problem["batches"])
    assert loss == pytest.approx(problem["loss"], rel=1e-12)
    torch.testing.assert_close(grad, problem["g"], rtol=1e-10, atol=1e-12)


def test_hvp_on_resnet_with_batchnorm_is_symmetric_and_batching_invariant():
    """A real conv net with BN (ResNet-20 at width 1/4, float64): u^T H v = v^T H u, and splitting the batch
    does not change H v (it would with batch statistics)."""
    model = create_model("resnet20", width=0.25).double()
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 3, 32, 32, generator=gen, dtype=torch.float64), torch.randint(0, 10, (6,), generator=gen)
    hvp = make_hvp(model, nn.CrossEntropyLoss(), [(x, y)])
    u, v = (torch.randn(hvp.dim, generator=gen, dtype=torch.float64) for _ in range(2))
    hv = hvp(v)
    assert torch.dot(u, hv).item() == pytest.approx(torch.dot(v, hvp(u)).item(), rel=1e-9)
    hv_split = make_hvp(model, nn.CrossEntropyLoss(), [(x[:2], y[:2]), (x[2:], y[2:])])(v)
    torch.testing.assert_close(hv_split, hv, rtol=1e-9, atol=1e-12)
    assert model.training


# ---- Eigenvalues ---------------------------------------------------------------------------------------------------

def test_lanczos_top_eigenpairs_match_eigh():
    matrix, eigenvalues = _known_spectrum_matrix()
    values, vectors = top_eigenpairs(matrix_hvp(matrix), k=5, iters=60, seed=0)
    torch.testing.assert_close(values, eigenvalues[:5], rtol=1e-8, atol=1e-8)
    _, exact_vectors = torch.linalg.eigh(matrix)
    cosines = (vectors @ exact_vectors[:, -5:].flip(1)).diagonal().abs()
    torch.testing.assert_close(cosines, torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-8)
    smallest, _ = top_eigenpairs(matrix_hvp(matrix), k=2, iters=150, seed=0, which="smallest")
    torch.testing.assert_close(smallest, eigenvalues[-2:].flip(0), rtol=0, atol=1e-6)


def test_lanczos_full_run_is_orthonormal_and_recovers_spectrum():
    """n steps with full reorthogonalisation: Q is orthonormal and T_n has exactly H's eigenvalues."""
    matrix, eigenvalues = _known_spectrum_matrix(n=120)
    start = torch.randn(120, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    result = lanczos(matrix_hvp(matrix), iters=120, start=start)
    torch.testing.assert_close(result.basis @ result.basis.T, torch.eye(120, dtype=torch.float64), rtol=0, atol=1e-10)
    ritz = torch.linalg.eigvalsh(result.tridiagonal()).flip(0)
    torch.testing.assert_close(ritz, eigenvalues, rtol=0, atol=1e-9)


def test_hessian_eigs_match_exact_hessian(problem):
    exact = torch.linalg.eigvalsh(problem["H"]).flip(0)
    values, vectors = hessian_eigs(problem["model"], problem["loss_fn"], problem["batches"], k=3,
                                   iters=exact.numel(), seed=0)
    torch.testing.assert_close(values, exact[:3], rtol=1e-8, atol=1e-10)
    # H u = lambda u for each returned eigenvector
    torch.testing.assert_close(vectors @ problem["H"], values[:, None] * vectors, rtol=0, atol=1e-8)


def test_hessian_eigs_of_a_parameter_subset_are_those_of_its_block(problem):
    model, hessian = problem["model"], problem["H"]
    last = list(model[3].parameters())  # the classifier's weight and bias: the last 18 of the 63 coordinates
    n_last = sum(p.numel() for p in last)
    block = hessian[-n_last:, -n_last:]
    values, _ = hessian_eigs(model, problem["loss_fn"], problem["batches"], k=2, iters=n_last, params=last)
    torch.testing.assert_close(values, torch.linalg.eigvalsh(block).flip(0)[:2], rtol=1e-8, atol=1e-10)


def test_power_iteration_matches_eigh():
    matrix, eigenvalues = _known_spectrum_matrix(n=80, outliers=(10.0, -7.0, 4.0))
    values, vectors = power_iteration(matrix_hvp(matrix), k=3, iters=500, tol=1e-12, seed=0)
    # largest |lambda| first: 10, -7, 4
    torch.testing.assert_close(values, torch.tensor([10.0, -7.0, 4.0], dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(vectors @ matrix, values[:, None] * vectors, rtol=0, atol=1e-4)


def test_top_eigenpairs_rejects_bad_arguments():
    hvp = matrix_hvp(torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="k"):
        top_eigenpairs(hvp, k=5)
    with pytest.raises(ValueError, match="which"):
        top_eigenpairs(hvp, k=1, which="top")


# ---- Trace and density ---------------------------------------------------------------------------------------------

def test_hutchinson_trace_within_two_percent():
    matrix, eigenvalues = _known_spectrum_matrix(n=60, outliers=(10.0,))
    matrix = matrix + 5 * torch.eye(60, dtype=torch.float64)  # trace 300, well away from 0
    estimate = hutchinson_trace(matrix_hvp(matrix), n_samples=1000, seed=0)
    assert estimate.mean == pytest.approx(matrix.trace().item(), rel=0.02)


def test_hessian_trace_matches_exact_within_its_error(problem):
    """The model-level estimate is within 4 standard errors of tr(H), and its standard error matches the
    Rademacher variance 2 sum_{i != j} H_ij^2 / n_samples."""
    hessian, n_samples = problem["H"], 300
    estimate = hessian_trace(problem["model"], problem["loss_fn"], problem["batches"], n_samples=n_samples, seed=0)
    exact_stderr = math.sqrt(2 * (hessian.square().sum() - hessian.diagonal().square().sum()).item() / n_samples)
    assert abs(estimate.mean - hessian.trace().item()) < 4 * exact_stderr
    assert estimate.stderr == pytest.approx(exact_stderr, rel=0.2)


def test_slq_density_integrates_to_one_and_matches_moments():
    matrix, eigenvalues = _known_spectrum_matrix(n=200)
    matrix = matrix + 2 * torch.eye(200, dtype=torch.float64)  # tr/n = 2.165, away from 0
    quadrature = slq(matrix_hvp(matrix), iters=40, n_probes=20, seed=0)
    assert quadrature.weights.sum().item() == pytest.approx(1.0, abs=1e-10)
    grid, density = gaussian_density(quadrature, n_grid=4000)
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-3)
    n = matrix.shape[0]
    # first moment ~ tr(H)/n, second ~ ||H||_F^2 / n
    assert torch.trapezoid(grid * density, grid).item() == pytest.approx(matrix.trace().item() / n, rel=0.03)
    second = (quadrature.weights * quadrature.nodes**2).sum().item()
    assert second == pytest.approx(matrix.square().sum().item() / n, rel=0.05)


def test_hessian_density_nodes_are_exact_eigenvalues(problem):
    """With iters >= n each SLQ node is an eigenvalue of H, and the broadened density integrates to 1."""
    quadrature = slq(make_hvp(problem["model"], problem["loss_fn"], problem["batches"]), iters=70, n_probes=2)
    exact = torch.linalg.eigvalsh(problem["H"])
    distance = (quadrature.nodes[:, None] - exact[None, :]).abs().min(dim=1).values
    assert distance.max().item() < 1e-8
    grid, density = hessian_density(problem["model"], problem["loss_fn"], problem["batches"], iters=30, n_probes=2)
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-3)


# ---- Gradient overlap ----------------------------------------------------------------------------------------------

def test_subspace_overlap_of_known_vectors():
    matrix, _ = _known_spectrum_matrix(n=50)
    _, exact_vectors = torch.linalg.eigh(matrix)
    top, rest = exact_vectors[:, -3:].T, exact_vectors[:, :-3].T
    inside = top.T @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    outside = rest.T @ torch.randn(47, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert subspace_overlap(inside, top) == pytest.approx(1.0, abs=1e-12)
    assert subspace_overlap(outside, top) == pytest.approx(0.0, abs=1e-12)
    # ||P g||^2/||g||^2 = a^2 / (a^2 + b^2) for g = a u + b w, u in the span, w orthogonal, both unit
    mixed = 3 * inside / inside.norm() + 4 * outside / outside.norm()
    assert subspace_overlap(mixed, top) == pytest.approx(9 / 25, abs=1e-12)
    # any basis of the same span gives the same overlap
    skewed = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 1.0]], dtype=torch.float64) @ top
    assert subspace_overlap(mixed, skewed) == pytest.approx(9 / 25, abs=1e-12)


def test_subspaces_overlap_of_known_subspaces():
    e = torch.eye(4, dtype=torch.float64)
    plane = e[:2]  # span(e1, e2)
    assert subspaces_overlap(plane, plane) == pytest.approx(1.0, abs=1e-12)
    assert subspaces_overlap(plane, e[2:]) == pytest.approx(0.0, abs=1e-12)
    # span(e1, e3): one principal angle 0, one 90 degrees -> (1 + 0) / 2
    assert subspaces_overlap(plane, e[[0, 2]]) == pytest.approx(0.5, abs=1e-12)
    # span(e1, (e2 + e3)/sqrt 2): cos^2 of the angles 1 and 1/2 -> 3/4; any basis of either span gives the same
    tilted = torch.stack([e[0] + e[1] + e[2], 2 * e[0]])
    assert subspaces_overlap(plane, tilted) == pytest.approx(0.75, abs=1e-12)
    assert subspaces_overlap(tilted, plane) == pytest.approx(0.75, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        subspaces_overlap(plane, e[:3])


def test_gradient_overlap_matches_exact(problem):
    hessian, grad = problem["H"], problem["g"]
    _, exact_vectors = torch.linalg.eigh(hessian)
    exact_projection = exact_vectors[:, -3:].T @ grad
    expected = (exact_projection.square().sum() / grad.square().sum()).item()
    result = gradient_overlap(problem["model"], problem["loss_fn"], problem["batches"], k=3, iters=hessian.shape[0])
    assert result.overlap == pytest.approx(expected, abs=1e-8)
    assert result.grad_norm == pytest.approx(grad.norm().item(), rel=1e-10)


# ---- PyHessian (Yao et al., arXiv:1912.07145), pip pyhessian==0.1 --------------------------------------------------

def test_matches_pyhessian_hvp_and_top_eigenvalues():
    """Same HVP as PyHessian's dataloader mode (size-weighted batch average, model.eval()), and the same top-3
    eigenvalues as its power iteration with deflation (largest |lambda| first). PyHessian's ``density`` calls
    ``torch.eig``, removed from torch, so the SLQ density is not compared; its trace is a random estimate and
    is checked against the exact trace above instead."""
    import pyhessian  # pinned in the test extras
    model, loss_fn = _tiny_bn_mlp(torch.float32), nn.CrossEntropyLoss()
    batches = _batches(*_data(torch.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PyHessian's backward(create_graph=True) reference cycle
        reference = pyhessian.hessian(model, loss_fn, dataloader=batches, cuda=False)  # sets model.eval()
        v = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) for i, p in
             enumerate(model.parameters())]
        _, hv_reference = reference.dataloader_hv_product(v)
        torch.manual_seed(0)
        values_reference, _ = reference.eigenvalues(maxIter=400, tol=1e-5, top_n=3)
    model.train()  # PyHessian needs the model left in eval mode; ours must give the same from train mode
    hv = make_hvp(model, loss_fn, batches)(v)
    for ours, theirs in zip(hv, hv_reference):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    values, _ = hessian_eigs(model, loss_fn, batches, k=3, iters=63, which="magnitude")
    torch.testing.assert_close(values, torch.tensor(values_reference, dtype=torch.float64), rtol=1e-3, atol=1e-5)
