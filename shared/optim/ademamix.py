"""AdEMAMix: "The AdEMAMix Optimizer: Better, Faster, Older", Pagliardini, Ablin and Grangier, arXiv:2409.03050.

Adam with a second, slow EMA of the gradient mixed into the numerator (Algorithm 1). With gradient g_t, step
t = 1, 2, ... (counted per parameter), lr eta, decay lambda:

    m1_t = beta1 m1_{t-1} + (1 - beta1) g_t                  fast EMA, bias-corrected: m1_hat = m1_t / (1 - beta1^t)
    m2_t = beta3(t) m2_{t-1} + (1 - beta3(t)) g_t            slow EMA, not bias-corrected
    nu_t = beta2 nu_{t-1} + (1 - beta2) g_t^2                  nu_hat = nu_t / (1 - beta2^t)
    theta_t = theta_{t-1} - eta ((m1_hat + alpha(t) m2_t) / (sqrt(nu_hat) + eps) + lambda theta_{t-1})

Schedulers of alpha and beta3 (Sec. 3, f_alpha and f_beta3; details in the appendix), with T = ``t_alpha_beta3``:

    alpha(t) = min(t alpha / T, alpha)                                                      linear warm-up
    beta3(t) = min(exp(ln(beta1) ln(beta3) / ((1 - t/T) ln(beta3) + (t/T) ln(beta1))), beta3)

beta3(t) grows so that the half-life of the slow EMA, ln(0.5)/ln(beta3(t)), moves linearly from beta1's to beta3's.
Without T (None) alpha and beta3 are constant (the paper's setting without warm-up).

Symbols: eta = ``lr``, (beta1, beta2, beta3) = ``betas``, alpha = ``alpha``, T = ``t_alpha_beta3``,
lambda = ``weight_decay`` (decoupled, multiplied by the scheduled lr as in AdamW), eps = ``eps``.
Reference: apple/ml-ademamix ``pytorch/ademamix.py`` (official). Tests assert_close against
``pytorch_optimizer.AdEMAMix`` (3.8.2), which divides alpha m2 by (1 - beta1^t) as well; the test undoes that by
scheduling its alpha as alpha(t) (1 - beta1^t) (see tests/test_optim_variance.py).
Deviations: the official code computes beta3(t) through ln(beta + 1e-8) (an O(1e-8) difference); the closed form
of the paper is used here. alpha(t), beta3(t) are functions of the per-parameter step, as in the official code.
"""
from __future__ import annotations

import math

import torch

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer


def alpha_schedule(step: int, alpha: float, t_alpha_beta3: int | None) -> float:
    """f_alpha(t) = min(t alpha / T, alpha), AdEMAMix (arXiv:2409.03050) Sec. 3; alpha when T is None."""
    if t_alpha_beta3 is None:
        return alpha
    return min(step * alpha / t_alpha_beta3, alpha)


def beta3_schedule(step: int, beta1: float, beta3: float, t_alpha_beta3: int | None) -> float:
    """f_beta3(t), AdEMAMix (arXiv:2409.03050) Sec. 3; beta3 when T is None.

    f_beta3(t) = min(exp(ln(beta1) ln(beta3) / ((1 - t/T) ln(beta3) + (t/T) ln(beta1))), beta3): the half-life
    ln(0.5)/ln(beta) interpolates linearly from beta1's (t = 0) to beta3's (t = T).
    """
    if t_alpha_beta3 is None:
        return beta3
    a = step / t_alpha_beta3
    log_b1, log_b3 = math.log(beta1), math.log(beta3)
    return min(math.exp(log_b1 * log_b3 / ((1 - a) * log_b3 + a * log_b1)), beta3)


@register_optimizer("ademamix", paper="arXiv:2409.03050")
class AdEMAMix(torch.optim.Optimizer):
    """Args:
        lr (float): eta, the learning rate.
        betas (tuple[float, float, float]): (beta1, beta2, beta3): fast EMA, second moment, slow EMA.
        alpha (float): weight of the slow EMA (paper: 4 to 10; official default 2, pytorch_optimizer 5).
        t_alpha_beta3 (int | None): T, steps of the alpha and beta3 warm-ups (paper: the total steps); None: off.
        eps (float): added to sqrt(nu_hat).
        weight_decay (float): lambda, decoupled (AdamW) decay.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
                 alpha: float = 5.0, t_alpha_beta3: int | None = None, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        check_hparams(lr=lr, betas=betas, n_betas=3, alpha=alpha, eps=eps, weight_decay=weight_decay)
        if t_alpha_beta3 is not None:
            if not (isinstance(t_alpha_beta3, int) and t_alpha_beta3 >= 1):
                raise ValueError(f"t_alpha_beta3 must be None or an int >= 1, got {t_alpha_beta3!r}")
            if not 0.0 < betas[0] <= betas[2]:  # the beta3 warm-up starts at beta1 and takes ln(beta1)
                raise ValueError(f"t_alpha_beta3 needs 0 < beta1 <= beta3, got betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), alpha=alpha, t_alpha_beta3=t_alpha_beta3, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """One step of AdEMAMix (arXiv:2409.03050) Algorithm 1, alpha and beta3 scheduled (Sec. 3)."""
        loss = None if closure is None else torch.enable_grad()(closure)()
        for g in self.param_groups:
            (beta1, beta2, beta3), lr, wd, eps = g["betas"], g["lr"], g["weight_decay"], g["eps"]
            for p in (p for p in g["params"] if p.grad is not None):
                if p.grad.is_sparse:
                    raise RuntimeError("AdEMAMix does not support sparse gradients")
                grad, state = p.grad, self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_slow=torch.zeros_like(p),
                                 exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t = state["step"]
                alpha_t = alpha_schedule(t, g["alpha"], g["t_alpha_beta3"])
                beta3_t = beta3_schedule(t, beta1, beta3, g["t_alpha_beta3"])
                m1, m2, nu = state["exp_avg"], state["exp_avg_slow"], state["exp_avg_sq"]
                # m1_t = beta1 m1_{t-1} + (1 - beta1) g_t
                m1.lerp_(grad, 1 - beta1)
                # m2_t = beta3(t) m2_{t-1} + (1 - beta3(t)) g_t
                m2.lerp_(grad, 1 - beta3_t)
                # nu_t = beta2 nu_{t-1} + (1 - beta2) g_t^2
                nu.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                # sqrt(nu_hat) + eps,  nu_hat = nu_t / (1 - beta2^t)
                denom = (nu.sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
                # (m1_hat + alpha(t) m2_t) / (sqrt(nu_hat) + eps),  m1_hat = m1_t / (1 - beta1^t)
                update = m1.div(1 - beta1 ** t).add_(m2, alpha=alpha_t).div_(denom)
                # theta_t = theta_{t-1} - eta (update + lambda theta_{t-1})
                update.add_(p, alpha=wd)
                p.add_(update, alpha=-lr)
        return loss
