"""analysis.findings on hand-made metrics whose verdicts are known: the paper's effects
built in (every finding supported), the opposite built in (none supported), pure noise,
a lower-is-better metric, and too few matched pairs to conclude."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.findings import MARGIN, findings
from taxonomy.equivalence import distinct
from tests.synthetic_store import EFFECT

PAPER = EFFECT  # the synthetic store's knees: weights_removed best, abs_sum > l1, taylor2_gn > taylor


def _opposite() -> dict[str, dict[str, float]]:
    """The paper's claims reversed: weights_removed worst, l1 over abs_sum, taylor over
    taylor2_gn, and a pointwise measure that dwarfs reduction and scaling."""
    out = {axis: {o: -v for o, v in opts.items()} for axis, opts in PAPER.items()}
    out["pointwise"] = {o: 5 * v for o, v in PAPER["pointwise"].items()}
    out["pointwise"]["taylor2_gn"] = 0.0
    out["reduction"] = {o: 0.2 * v for o, v in out["reduction"].items()}
    out["scaling"] = {o: 0.2 * v for o, v in out["scaling"].items()}
    return out


def _metrics(
    effect, tasks=(("t1", 30.0), ("t2", 45.0)), noise=0.0, seeds=2, specs=None, seed=0
) -> pd.DataFrame:
    """Trials of every distinct cell: value = task base + the components' effects (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, base in tasks:
        for spec in specs if specs is not None else distinct():
            parts = dict(zip(PAPER, (c.id for c in spec.components), strict=True))
            value = base + (sum(effect[a][o] for a, o in parts.items()) if effect else 0.0)
            for s in range(seeds):
                rows.append(
                    dict(task=task, signal=spec.id, sig_class=spec.id, seed=s, base_seed=0)
                    | {f"sig_{a}": o for a, o in parts.items()}
                    | {"value": value + noise * rng.normal()}
                )
    rows.append(dict(task="t1", signal="random", sig_class="random", seed=0, base_seed=0, value=99.0))
    return pd.DataFrame(rows)


def _verdicts(found) -> list[str]:
    return [f.verdict for f in found]


def test_the_papers_effects_support_every_finding():
    found = findings(_metrics(PAPER, noise=0.5), "value", n_resamples=300)
    assert _verdicts(found) == ["supported"] * 4, [f.summary for f in found]
    winners, spread, reduction, pointwise = found
    assert winners.numbers["share"] > 0.9 and winners.numbers["chance"] < 0.3
    assert spread.numbers["ratio_reduction_low"] >= MARGIN and spread.numbers["ratio_scaling_low"] >= MARGIN
    assert reduction.numbers["median_diff"] == pytest.approx(2.0, abs=0.5)  # abs_sum 4 vs l1 2
    assert pointwise.numbers["median_diff"] == pytest.approx(1.0, abs=0.5)  # taylor2_gn 3 vs taylor 2
    assert all(f.numbers["p_holm"] < 0.05 for f in (winners, reduction, pointwise))


def test_the_opposite_effects_support_none():
    found = findings(_metrics(_opposite(), noise=0.5), "value", n_resamples=300)
    assert _verdicts(found) == ["not supported"] * 4, [f.summary for f in found]
    assert found[0].numbers["share_ci_high"] < 0.5
    assert found[1].numbers["ratio_reduction_high"] < MARGIN


def test_pure_noise_decides_nothing_about_the_paired_claims():
    """With no effect at all, weights_removed wins about one family in six (chance) over every
    input x pointwise family, which is not most winners; the paired claims stay open. (Finding 2 compares
    sizes only: with no effect anywhere every component moves the headline alike.)"""
    tasks = (("t1", 30.0), ("t2", 45.0), ("t3", 40.0), ("t4", 50.0))
    found = findings(_metrics(None, tasks=tasks, noise=3.0), "value", n_resamples=300)
    families = {
        (spec.components[0].id, spec.components[1].id)
        for spec in distinct()
        if spec.components[3].id == "weights_removed"
    }
    assert found[0].numbers["winners"] == len(families) * len(tasks) and found[0].verdict == "not supported"
    assert found[2].verdict == found[3].verdict == "inconclusive"


def test_a_lower_is_better_metric_flips_every_direction():
    data = _metrics(PAPER, noise=0.5)
    data["value"] = -data["value"]
    found = findings(data, "value", higher_is_better=False, n_resamples=300)
    assert _verdicts(found) == ["supported"] * 4


def test_too_few_matched_pairs_are_inconclusive():
    """Three matched abs_sum/l1 pairs all favouring abs_sum: a two-sided Wilcoxon p >= 0.25."""
    specs = [s for s in distinct() if s.components[1].id == "taylor" and s.components[0].id == "activation"]
    specs = [s for s in specs if s.components[3].id in ("none", "l2", "weights_removed")]
    found = findings(_metrics(PAPER, tasks=(("t1", 30.0),), specs=specs), "value", n_resamples=100)
    reduction = found[2]
    assert reduction.numbers["pairs"] == 3 and reduction.numbers["wins"] == 3
    assert reduction.numbers["pvalue"] >= 0.25 and reduction.verdict == "inconclusive"
    assert found[3].verdict == "inconclusive" and "no matched pair" in found[3].summary
