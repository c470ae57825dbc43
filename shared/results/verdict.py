"""The verdict rule shared by every claim: seeds of variant a vs seeds of variant b → one of three verdicts.

Rule (also rendered into every paper README and the ledger by ``RULE_TEXT``):

* Let s = +1 for ``direction: greater`` and -1 for ``less``. The effect is d = s · (mean(a) − mean(b)), so a positive
  effect always points the way the paper claims; the margin m (default 0) is in the metric's own units.
* Each side needs at least ``MIN_SEEDS`` = 3 runs, else ``inconclusive`` ("n<3").
* Every value must be a finite number. A missing or non-finite value (``steps_to_target`` of a run that never reached
  the target, a NaN loss of a diverged run) makes the claim ``inconclusive`` with a reason naming the side and count:
  we do not guess what "never reached" is worth, and the raw numbers stay in ``runs.csv``.
* 95% confidence interval of d from Welch's t-test (unequal variances, Welch-Satterthwaite degrees of freedom).
  ``reproduced`` when the whole CI lies above m; ``not reproduced`` when the whole CI lies below m (with m = 0: the
  CI excludes the claimed sign); otherwise ``inconclusive``.
* A claim against a fixed number (``compare: {a, threshold: x}``, e.g. "reaches 94% accuracy") uses d = s · (mean(a) −
  x) and a one-sample t interval (``judge_threshold``); the rest of the rule is the same.
* A claim between two metrics of the same runs (``compare: {a, b_metric: N}``, e.g. "after weight matching the barrier
  is lower than before", in the same pairs of networks) uses the per-run differences M − N, d = s · mean(M − N), and
  a one-sample (paired) t interval over runs (``judge_paired``); the rest of the rule is the same. A claim between
  two variants whose runs of the same seed share their initialization and data order may pair them
  (``compare: {a, b, paired: true}``): the same paired interval over the per-seed differences, a seed run on one side
  only counting as a missing value.
* Zero variance on both sides makes the CI the single point d: then d > m is ``reproduced``, d < m ``not reproduced``
  and d = m ``inconclusive``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Iterable

from scipy import stats

MIN_SEEDS = 3
CONFIDENCE = 0.95
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"

RULE_TEXT = (
    "**Verdict rule** (`shared/results/verdict.py`). For each claim \"a is greater (or less) than b in metric M\" we "
    "take the effect d = mean(a) − mean(b), signed so that d > 0 points the way the paper claims, and its 95% "
    "confidence interval from Welch's t-test over seeds (for a claim against a fixed number, \"a reaches x\", "
    "d = mean(a) − x with a one-sample t interval; for two metrics of the same runs, or two variants paired by seed "
    "where a claim says so, the mean of the per-run differences with a paired t interval). **reproduced**: the whole interval lies above the claimed "
    "margin (0 unless the claim gives one); **not reproduced**: the whole interval lies below it (with no margin: "
    "the data exclude the claimed sign); otherwise **inconclusive**. Fewer than 3 seeds on either side, or any "
    "missing value (e.g. a run that never reached the target loss, or a NaN loss after divergence), is "
    "inconclusive with the reason stated. A verdict always names its profile: a `tiny` or `smoke` verdict tests "
    "the pipeline at a small scale, not the paper's setting."
)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one claim on one profile; ``effect``, ``ci_low``, ``ci_high`` are signed (positive = as claimed)."""

    verdict: str
    reason: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    n_a: int
    n_b: int
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    missing_a: int = 0  # values that were missing or non-finite; means and stds are over the others
    missing_b: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(values: Iterable) -> tuple[list[float], int]:
    """(finite values as floats, count of missing / non-finite ones)."""
    finite, missing = [], 0
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            missing += 1
            continue
        if math.isfinite(x):
            finite.append(x)
        else:
            missing += 1
    return finite, missing


def _difference(x, y) -> float:
    """x − y as a float, NaN when either is missing or non-finite."""
    (fx, _), (fy, _) = _clean([x]), _clean([y])
    return fx[0] - fy[0] if fx and fy else math.nan


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def welch_ci(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean(a) − mean(b), CI low, CI high, two-sided p) by Welch's t-test; needs ≥ 2 values per side."""
    (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
    diff = ma - mb
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:  # both sides constant: the interval is the point itself
        return diff, diff, diff, (1.0 if diff == 0 else 0.0)
    # Welch-Satterthwaite degrees of freedom
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    p = 2.0 * stats.t.sf(abs(diff) / se, df)
    return diff, diff - half, diff + half, float(p)


def _classify(out, sign: float, diff: float, lo: float, hi: float, p: float, margin: float) -> Verdict:
    """Sign the interval so that positive means "as the paper claims", then compare it with the margin."""
    # + 0.0 turns the −0.0 that sign = −1 makes of a zero into 0.0, so a zero-width interval prints as [0, 0]
    effect, lo, hi = sign * diff + 0.0, min(sign * lo, sign * hi) + 0.0, max(sign * lo, sign * hi) + 0.0
    ci = f"95% CI [{lo:.4g}, {hi:.4g}]"
    where = f"the margin {margin:g}" if margin else "0"
    if lo > margin:
        return out(REPRODUCED, f"{ci} lies above {where}", effect, lo, hi, p)
    if hi < margin:
        return out(NOT_REPRODUCED, f"{ci} lies below {where}", effect, lo, hi, p)
    return out(INCONCLUSIVE, f"{ci} contains {where}", effect, lo, hi, p)


def judge_threshold(a: Iterable, threshold: float, direction: str, margin: float = 0.0,
                    min_seeds: int = MIN_SEEDS) -> Verdict:
    """The same rule for "variant a is above (below) a fixed number": d = s · (mean(a) − threshold) with the 95% CI
    of a one-sample t-test (a fixed threshold has no variance). Reported with ``mean_b`` = threshold, ``n_b`` = 0."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    margin = 0.0 if margin is None or (isinstance(margin, float) and math.isnan(margin)) else margin
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (in the metric's units), got {margin}")
    a = list(a)
    fa, miss_a = _clean(a)
    ma, sa = _mean_std(fa)
    sign, nan = (1.0 if direction == "greater" else -1.0), math.nan

    def out(verdict, reason, effect=nan, lo=nan, hi=nan, p=nan) -> Verdict:
        return Verdict(verdict, reason, effect, lo, hi, p, len(a), 0, ma, sa, float(threshold), 0.0, miss_a, 0)

    if len(a) < min_seeds:
        return out(INCONCLUSIVE, f"n<{min_seeds} (n_a={len(a)})", effect=sign * (ma - threshold) if fa else nan)
    if miss_a:
        return out(INCONCLUSIVE, f"a: {miss_a} of {len(a)} values missing or non-finite (e.g. diverged)")
    diff, se = ma - threshold, sa / math.sqrt(len(fa))
    if se == 0.0:
        lo = hi = diff
        p = 1.0 if diff == 0 else 0.0
    else:
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(fa) - 1) * se
        lo, hi, p = diff - half, diff + half, float(2.0 * stats.t.sf(abs(diff) / se, len(fa) - 1))
    return _classify(out, sign, diff, lo, hi, p, margin)


def judge_paired(a: Iterable, b: Iterable, direction: str, margin: float = 0.0,
                 min_seeds: int = MIN_SEEDS) -> Verdict:
    """The same rule for two metrics of the same runs, ``a[i]`` and ``b[i]`` from run i: d = s · mean(a − b) with the
    95% CI of a paired (one-sample) t-test on the per-run differences. A run with either value missing or non-finite
    makes the claim inconclusive, as in ``judge``. Reported with both sides' own means and stds."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"paired values need one a and one b per run, got {len(a)} and {len(b)}")
    diffs = [_difference(x, y) for x, y in zip(a, b)]
    v = judge_threshold(diffs, 0.0, direction, margin, min_seeds)
    fa, miss_a = _clean(a)
    fb, miss_b = _clean(b)
    (ma, sa), (mb, sb) = _mean_std(fa), _mean_std(fb)
    reason = v.reason.replace("a: ", "paired a − b: ", 1) if v.reason.startswith("a: ") else v.reason
    return replace(v, reason=reason, n_b=len(b), mean_a=ma, std_a=sa, mean_b=mb, std_b=sb, missing_a=miss_a,
                   missing_b=miss_b)


def judge(a: Iterable, b: Iterable, direction: str, margin: float = 0.0,
          min_seeds: int = MIN_SEEDS) -> Verdict:
    """Apply the verdict rule to the per-seed values of variant ``a`` and variant ``b`` (module docstring)."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if margin is None or (isinstance(margin, float) and math.isnan(margin)):
        margin = 0.0
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (in the metric's units), got {margin}")
    a, b = list(a), list(b)
    (fa, miss_a), (fb, miss_b) = _clean(a), _clean(b)
    (ma, sa), (mb, sb) = _mean_std(fa), _mean_std(fb)
    sign = 1.0 if direction == "greater" else -1.0
    nan = math.nan

    def out(verdict: str, reason: str, effect=nan, lo=nan, hi=nan, p=nan) -> Verdict:
        return Verdict(verdict, reason, effect, lo, hi, p, len(a), len(b), ma, sa, mb, sb, miss_a, miss_b)

    if len(a) < min_seeds or len(b) < min_seeds:
        return out(INCONCLUSIVE, f"n<{min_seeds} (n_a={len(a)}, n_b={len(b)})",
                   effect=sign * (ma - mb) if fa and fb else nan)
    if miss_a or miss_b:
        parts = [f"{side}: {m} of {n} values missing or non-finite"
                 for side, m, n in (("a", miss_a, len(a)), ("b", miss_b, len(b))) if m]
        return out(INCONCLUSIVE, "; ".join(parts) + " (e.g. target never reached, or diverged)")
    diff, lo, hi, p = welch_ci(fa, fb)
    return _classify(out, sign, diff, lo, hi, p, margin)
