"""Loss-landscape tools (catalogue benchmark B5).

Curvature (``hessian``, ``spectrum``, ``overlap``): Hessian-vector products of a model's loss on a fixed data
subset, top-k eigenpairs (Lanczos, power iteration), Hutchinson trace, SLQ spectral density and the gradient's
overlap with the top-k eigenspace. Model-level entry points: ``hessian_eigs``, ``hessian_trace``,
``hessian_density``, ``gradient_overlap``; the rest take an ``HVPOperator`` (``make_hvp``, ``matrix_hvp``).

Surfaces and connectivity (``directions``, ``surface``, ``interpolate``, ``permute``): filter-normalised random
directions (Li et al., arXiv:1712.09913), resumable 1-D/2-D loss and accuracy grids with contour and 3-D plots,
linear interpolation with loss barriers and BatchNorm re-estimation, and Git Re-Basin permutation alignment
(weight and activation matching; arXiv:2209.04836) for MLPs, VGGs and CIFAR ResNets.
"""
from shared.landscape.hessian import (HVPOperator, curvature_mode, curvature_params, flatten, make_hvp, matrix_hvp,
                                      subset_loss_and_grad, unflatten)
from shared.landscape.overlap import GradientOverlap, gradient_overlap, subspace_overlap, subspaces_overlap
from shared.landscape.spectrum import (LanczosResult, SpectralQuadrature, TraceEstimate, gaussian_density,
                                       hessian_density, hessian_eigs, hessian_trace, hutchinson_trace, lanczos,
                                       power_iteration, slq, top_eigenpairs)

_CURVATURE = ["GradientOverlap", "HVPOperator", "LanczosResult", "SpectralQuadrature", "TraceEstimate",
              "curvature_mode", "curvature_params", "flatten", "gaussian_density", "gradient_overlap",
              "hessian_density", "hessian_eigs", "hessian_trace", "hutchinson_trace", "lanczos", "make_hvp",
              "matrix_hvp", "power_iteration", "slq", "subset_loss_and_grad", "subspace_overlap",
              "subspaces_overlap", "top_eigenpairs", "unflatten"]

# loss surfaces, interpolation and permutation alignment
from shared.landscape.directions import (Direction, direction_between, direction_from_vector,  # noqa: E402
                                         normalize_direction, random_direction, trainable_parameters)
from shared.landscape.interpolate import (interpolate_state_dicts, interpolation_curve, loss_barrier,  # noqa: E402
                                          reset_bn_stats)
from shared.landscape.permute import (SPEC_BUILDERS, PermutationSpec, activation_matching,  # noqa: E402
                                      apply_permutation, identity_permutation, mlp_permutation_spec,
                                      permutation_spec, random_permutation, resnet_permutation_spec,
                                      vgg_permutation_spec, weight_matching)
from shared.landscape.surface import (evaluate_loss, grid_from_csv, plot_1d, plot_contour,  # noqa: E402
                                      plot_surface_3d, read_rows, set_weights, surface, surface_1d, surface_2d)

_LANDSCAPE = ["Direction", "PermutationSpec", "SPEC_BUILDERS", "activation_matching", "apply_permutation",
              "direction_between", "direction_from_vector", "evaluate_loss", "grid_from_csv", "identity_permutation",
              "interpolate_state_dicts", "interpolation_curve", "loss_barrier", "mlp_permutation_spec",
              "normalize_direction", "permutation_spec", "plot_1d", "plot_contour", "plot_surface_3d",
              "random_direction", "random_permutation", "read_rows", "reset_bn_stats", "resnet_permutation_spec",
              "set_weights", "surface", "surface_1d", "surface_2d", "trainable_parameters", "vgg_permutation_spec",
              "weight_matching"]

__all__ = _CURVATURE + _LANDSCAPE
