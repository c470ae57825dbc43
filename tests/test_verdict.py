"""The shared verdict rule on constructed inputs: every outcome, margins, direction, too few seeds, missing values."""
import math

import pytest

from shared.results.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, judge, welch_ci


def test_verdict_reproduced_when_ci_above_zero():
    v = judge([0.92, 0.921, 0.919], [0.90, 0.901, 0.899], "greater")
    assert v.verdict == REPRODUCED
    assert v.effect == pytest.approx(0.02)
    assert 0 < v.ci_low < v.effect < v.ci_high
    assert v.p_value < 0.05 and (v.n_a, v.n_b) == (3, 3)


def test_verdict_not_reproduced_when_ci_excludes_claimed_sign():
    v = judge([0.90, 0.901, 0.899], [0.92, 0.921, 0.919], "greater")
    assert v.verdict == NOT_REPRODUCED
    assert v.effect == pytest.approx(-0.02) and v.ci_high < 0


def test_verdict_inconclusive_when_ci_overlaps_zero():
    v = judge([0.91, 0.93, 0.90], [0.92, 0.90, 0.915], "greater")
    assert v.verdict == INCONCLUSIVE
    assert v.ci_low < 0 < v.ci_high
    assert "contains 0" in v.reason


@pytest.mark.parametrize("n_a,n_b", [(2, 3), (3, 2), (1, 1), (0, 3)])
def test_verdict_inconclusive_below_three_seeds(n_a, n_b):
    v = judge([1.0, 1.1, 1.2][:n_a], [0.0, 0.1, 0.2][:n_b], "greater")
    assert v.verdict == INCONCLUSIVE
    assert v.reason.startswith("n<3")
    assert (v.n_a, v.n_b) == (n_a, n_b)


def test_verdict_direction_less_flips_the_sign():
    # a has lower loss than b: the claim "a less than b" holds, effect is reported positive
    v = judge([5.0, 5.1, 4.9], [6.0, 6.1, 5.9], "less")
    assert v.verdict == REPRODUCED
    assert v.effect == pytest.approx(1.0)
    assert v.ci_low > 0
    assert judge([6.0, 6.1, 5.9], [5.0, 5.1, 4.9], "less").verdict == NOT_REPRODUCED


def test_verdict_margin_moves_the_threshold():
    a, b = [0.925, 0.926, 0.924], [0.92, 0.921, 0.919]  # effect 0.005, tight CI
    assert judge(a, b, "greater").verdict == REPRODUCED
    assert judge(a, b, "greater", margin=0.001).verdict == REPRODUCED
    # the whole CI lies below a margin of 0.02: the claimed size of the effect is excluded
    below = judge(a, b, "greater", margin=0.02)
    assert below.verdict == NOT_REPRODUCED and "margin" in below.reason
    # a margin inside the CI
    assert judge([0.93, 0.92, 0.925], [0.92, 0.915, 0.91], "greater", margin=0.01).verdict == INCONCLUSIVE


@pytest.mark.parametrize("missing", [None, math.nan, math.inf, "n/a"])
def test_verdict_missing_values_are_inconclusive(missing):
    v = judge([100, 120, missing], [200, 210, 190], "less")
    assert v.verdict == INCONCLUSIVE
    assert "a: 1 of 3 values missing" in v.reason
    assert math.isnan(v.effect)
    assert v.mean_a == pytest.approx(110)  # the finite values are still summarised


def test_verdict_zero_variance_both_sides():
    assert judge([1, 1, 1], [0, 0, 0], "greater").verdict == REPRODUCED
    assert judge([0, 0, 0], [1, 1, 1], "greater").verdict == NOT_REPRODUCED
    tie = judge([1, 1, 1], [1, 1, 1], "greater")
    assert tie.verdict == INCONCLUSIVE and tie.p_value == 1.0


def test_verdict_zero_width_interval_prints_without_minus_zero():
    tie = judge([0, 0, 0], [0, 0, 0], "less")  # sign −1 turns the zero interval into −0.0
    assert "95% CI [0, 0] contains 0" in tie.reason
    assert math.copysign(1.0, tie.ci_low) == 1.0 and math.copysign(1.0, tie.effect) == 1.0


def test_welch_ci_matches_scipy():
    from scipy import stats

    a, b = [1.0, 2.0, 3.5, 2.2], [0.5, 0.7, 1.9]
    diff, lo, hi, p = welch_ci(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    assert p == pytest.approx(res.pvalue)
    ci = res.confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert diff == pytest.approx(sum(a) / 4 - sum(b) / 3)


def test_verdict_rejects_bad_arguments():
    with pytest.raises(ValueError, match="direction"):
        judge([1, 2, 3], [1, 2, 3], "bigger")
    with pytest.raises(ValueError, match="margin"):
        judge([1, 2, 3], [1, 2, 3], "greater", margin=-1)


def test_threshold_claims_use_a_one_sample_interval():
    from scipy import stats as st

    from shared.results.verdict import judge_threshold

    a = [0.941, 0.943, 0.945]
    v = judge_threshold(a, 0.93, "greater")
    half = st.t.ppf(0.975, 2) * 0.002 / 3 ** 0.5  # sample std of a is 0.002: half-width 0.00497
    assert v.effect == pytest.approx(0.013) and v.ci_low == pytest.approx(0.013 - half)
    assert v.verdict == "reproduced" and v.mean_b == 0.93 and v.n_b == 0
    assert judge_threshold(a, 0.95, "greater").verdict == "not reproduced"
    assert judge_threshold(a, 0.943, "greater").verdict == "inconclusive"
    assert judge_threshold(a, 0.95, "less").verdict == "reproduced"
    assert judge_threshold(a[:2], 0.9, "greater").reason.startswith("n<3")
    assert judge_threshold(a + [float("nan")], 0.9, "greater").verdict == "inconclusive"


def test_paired_claims_use_the_per_run_differences():
    from scipy import stats as st

    from shared.results.verdict import judge_paired

    # the same three runs measured twice (a barrier before and after weight matching): the sides overlap a lot
    # (Welch over the two sides would be inconclusive), but every run's difference is 0.10 ± 0.01
    naive = [0.50, 0.80, 0.65]
    permuted = [0.41, 0.69, 0.55]
    diffs = [p - n for p, n in zip(permuted, naive)]  # -0.09, -0.11, -0.10: mean -0.10, sample std 0.01
    v = judge_paired(permuted, naive, "less")
    half = st.t.ppf(0.975, 2) * 0.01 / 3 ** 0.5
    assert v.effect == pytest.approx(0.10) and v.ci_low == pytest.approx(0.10 - half)
    assert v.ci_high == pytest.approx(0.10 + half)
    assert v.verdict == REPRODUCED and sum(diffs) / 3 == pytest.approx(-0.10)
    assert judge(permuted, naive, "less").verdict == INCONCLUSIVE
    assert (v.mean_a, v.mean_b, v.n_a, v.n_b) == (pytest.approx(0.55), pytest.approx(0.65), 3, 3)
    assert judge_paired(permuted, naive, "greater").verdict == NOT_REPRODUCED
    assert judge_paired(permuted, naive, "less", margin=0.2).verdict == NOT_REPRODUCED  # 0.10 is below 0.2
    # a run with one value missing: inconclusive, named as the pair's
    missing = judge_paired([0.41, math.nan, 0.55], naive, "less")
    assert missing.verdict == INCONCLUSIVE and missing.reason.startswith("paired a − b: 1 of 3")
    assert missing.missing_a == 1 and missing.missing_b == 0
    assert judge_paired(permuted[:2], naive[:2], "less").reason.startswith("n<3")
    with pytest.raises(ValueError, match="one a and one b per run"):
        judge_paired(permuted, naive[:2], "less")
