"""The paper's findings (SPEC §4), each tested on a store, with a verdict and its numbers.

1. *``weights_removed`` scaling appears in most winners.* A winner is the best signal of
   one input x pointwise family in one task (the paper's "best weight-based", "best
   gradient-based", ... signals). Statistic: the share of winners whose scaling is
   ``weights_removed``, a one-sided binomial test of that share against the share expected
   if scaling did not matter (the fraction of ``weights_removed`` cells among each family's
   candidates, averaged), and its Clopper-Pearson 95 % interval.
2. *Reduction and scaling matter as much as the pointwise measure.* How much a component
   matters = the mean absolute difference between two signals that differ in that
   component only (same task, same other three components), averaged over matched sets.
   Statistic: the ratio of reduction's and of scaling's to the pointwise measure's, with
   95 % percentile-bootstrap intervals over matched sets.
3. *Among gradient signals ``abs_sum`` beats ``l1``*, and 4. *``taylor2_gn`` edges out
   ``taylor``.* Statistic: a two-sided Wilcoxon signed-rank test over matched pairs (same
   task and other three components, seeds averaged first; blocks = tasks x matched cells).
   Gradient signals are the pointwise measures that read the gradient and can be negative
   (``gradient``, ``taylor``, ``taylor2_lm``, ``taylor2_gn``): for the non-negative Hessian
   measures ``abs_sum`` *is* ``l1`` (equivalence rules 1 and 4a).

Verdict rules (alpha = 0.05; the p-values of findings 1, 3 and 4 are Holm-adjusted
together):

- 1: *supported* if more than half the winners use ``weights_removed`` and the binomial
  p < alpha; *not supported* if the interval of the share lies below 1/2; else
  *inconclusive*.
- 2: *supported* if both ratios' intervals lie at or above :data:`MARGIN` (the component
  moves the headline at least 80 % as much as the pointwise measure); *not supported* if
  either interval lies below it; else *inconclusive*.
- 3, 4: *supported* if p < alpha and the median difference favours the claim; *not
  supported* if p < alpha and it favours the other option; else *inconclusive*.

Matched pairs within one task share a network and base models, so they are not fully
independent; with few tasks read the p-values as descriptive. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats as ss

from analysis.effects import COMPONENTS, cells
from analysis.stats import holm

__all__ = ["Finding", "findings", "ALPHA", "MARGIN", "GRADIENT_POINTWISE", "SUPPORTED", "NOT", "UNSURE"]

ALPHA = 0.05
MARGIN = 0.8
GRADIENT_POINTWISE = ("gradient", "taylor", "taylor2_lm", "taylor2_gn")
SUPPORTED, NOT, UNSURE = "supported", "not supported", "inconclusive"


@dataclass
class Finding:
    """One finding: the claim, how it was tested, the verdict and the numbers behind it."""

    claim: str
    statistic: str
    rule: str
    verdict: str = UNSURE
    numbers: dict[str, float] = field(default_factory=dict)
    summary: str = ""
    pvalue: float = np.nan  # the p-value entering Holm (NaN for finding 2)


def findings(
    metrics: pd.DataFrame,
    metric: str = "sparsity_at_5",
    *,
    higher_is_better: bool = True,
    by: Sequence[str] = ("task",),
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[Finding]:
    """Test the four findings of SPEC §4 on per-trial metrics (references are ignored).

    Parameters
    ----------
    metrics
        One row per trial (:func:`analysis.metrics.trial_metrics`), one protocol label.
    metric
        The headline compared; ``higher_is_better`` its direction.
    by
        Columns of a block (a task); cells never mix blocks.
    n_resamples, seed
        Of the bootstrap of finding 2.
    """
    table = cells(metrics, metric, list(by))
    sign = 1.0 if higher_is_better else -1.0
    table = table.assign(value=sign * table["value"])  # from here on, larger = better
    out = [
        _winners(table, list(by)),
        _spread(table, list(by), n_resamples, seed),
        _paired(table, list(by), "reduction", "abs_sum", "l1", GRADIENT_POINTWISE),
        _paired(table, list(by), "pointwise", "taylor2_gn", "taylor", None),
    ]
    tested = [f for f in out if np.isfinite(f.pvalue)]
    for f, p in zip(tested, holm([f.pvalue for f in tested]), strict=True):
        f.numbers["p_holm"] = float(p)
        f.verdict = _verdict(f, float(p))
        f.summary += f"; Holm-adjusted p = {_p(p)}"
    return out


def _p(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _verdict(f: Finding, p_holm: float) -> str:
    n = f.numbers
    if "share" in n:  # finding 1
        if n["share"] > 0.5 and p_holm < ALPHA:
            return SUPPORTED
        return NOT if n["share_ci_high"] < 0.5 else UNSURE
    if p_holm >= ALPHA or n["median_diff"] == 0:
        return UNSURE
    return SUPPORTED if n["median_diff"] > 0 else NOT


def _winners(table: pd.DataFrame, by: list[str]) -> Finding:
    f = Finding(
        claim="`weights_removed` scaling appears in most winners",
        statistic="share of winners (best signal of each input × pointwise family per task) scaled by "
        "`weights_removed`; one-sided binomial test against the share expected by chance",
        rule="supported if the share > 1/2 and binomial p (Holm) < 0.05; not supported if its 95 % "
        "interval lies below 1/2; else inconclusive",
    )
    wins, chance, ambiguous = [], [], 0
    for _, group in table.groupby([*by, "input", "pointwise"], observed=True, sort=True):
        is_wr = group["scaling"] == "weights_removed"
        if len(group) < 2 or not is_wr.any():
            continue
        best = group["value"] == group["value"].max()
        if is_wr[best].any() and not is_wr[best].all():
            ambiguous += 1  # a tie between a weights_removed cell and another
            continue
        wins.append(bool(is_wr[best].all()))
        chance.append(float(is_wr.mean()))
    n, k = len(wins), int(sum(wins))
    if n == 0:
        f.summary = "no input × pointwise family with a `weights_removed` cell and another scaling"
        return f
    p0 = float(np.mean(chance))
    test = ss.binomtest(k, n, p0, alternative="greater")
    ci = ss.binomtest(k, n).proportion_ci(0.95)
    f.pvalue = float(test.pvalue)
    f.numbers = {
        "winners": n,
        "wr_winners": k,
        "share": k / n,
        "share_ci_low": float(ci.low),
        "share_ci_high": float(ci.high),
        "chance": p0,
        "ties_dropped": ambiguous,
        "pvalue": f.pvalue,
    }
    f.summary = (
        f"{k} of {n} winners ({100 * k / n:.0f} %, 95 % CI {100 * ci.low:.0f}–{100 * ci.high:.0f} %) "
        f"use `weights_removed`; chance {100 * p0:.0f} %; binomial p = {_p(f.pvalue)}"
    )
    return f


def _set_spread(table: pd.DataFrame, by: list[str], component: str) -> np.ndarray:
    """Per matched set of ``component`` (>= 2 options), the mean |difference| over its pairs."""
    others = [c for c in COMPONENTS if c != component]
    out = []
    for _, group in table.groupby([*by, *others], observed=True, sort=True):
        v = group["value"].to_numpy(dtype=float)
        if len(v) >= 2:
            out.append(float(np.abs(v[:, None] - v[None, :])[np.triu_indices(len(v), 1)].mean()))
    return np.asarray(out)


def _spread(table: pd.DataFrame, by: list[str], n_resamples: int, seed: int) -> Finding:
    f = Finding(
        claim="reduction and scaling matter as much as the pointwise measure",
        statistic="mean |difference| between signals that differ in one component only (matched sets), "
        "reduction's and scaling's as a ratio to the pointwise measure's, 95 % bootstrap interval",
        rule=f"supported if both ratios' intervals lie at or above {MARGIN:g}; not supported if either "
        "lies below it; else inconclusive",
    )
    sets = {c: _set_spread(table, by, c) for c in ("pointwise", "reduction", "scaling")}
    f.numbers = {f"n_sets_{c}": len(v) for c, v in sets.items()}
    if any(len(v) == 0 for v in sets.values()):
        missing = ", ".join(c for c, v in sets.items() if len(v) == 0)
        f.summary = f"no matched sets for {missing}: the comparison needs signals differing in one component"
        return f
    rng = np.random.default_rng(seed)
    boot = {c: v[rng.integers(0, len(v), (n_resamples, len(v)))].mean(axis=1) for c, v in sets.items()}
    parts, verdicts = [], []
    for c in ("pointwise", "reduction", "scaling"):
        f.numbers[f"spread_{c}"] = float(sets[c].mean())
    for c in ("reduction", "scaling"):
        ratio = f.numbers[f"spread_{c}"] / f.numbers["spread_pointwise"]
        with np.errstate(divide="ignore", invalid="ignore"):
            low, high = np.nanquantile(boot[c] / boot["pointwise"], [0.025, 0.975])
        f.numbers.update({f"ratio_{c}": ratio, f"ratio_{c}_low": float(low), f"ratio_{c}_high": float(high)})
        verdicts.append(SUPPORTED if low >= MARGIN else NOT if high < MARGIN else UNSURE)
        parts.append(f"{c} {ratio:.2f} [{low:.2f}, {high:.2f}]")
    f.verdict = NOT if NOT in verdicts else SUPPORTED if set(verdicts) == {SUPPORTED} else UNSURE
    f.summary = (
        f"mean |difference| pointwise {f.numbers['spread_pointwise']:.1f}, reduction "
        f"{f.numbers['spread_reduction']:.1f}, scaling {f.numbers['spread_scaling']:.1f} points; "
        f"ratio to pointwise: {', '.join(parts)}"
    )
    return f


def _paired(
    table: pd.DataFrame, by: list[str], component: str, a: str, b: str, pointwise: Sequence[str] | None
) -> Finding:
    scope = " among gradient signals" if pointwise else ""
    f = Finding(
        claim=f"{scope.strip().capitalize() + ' ' if scope else ''}`{a}` beats `{b}`"
        if component == "reduction"
        else f"`{a}` edges out `{b}`",
        statistic=f"two-sided Wilcoxon signed-rank test of `{a}` − `{b}` over matched pairs (same task and "
        f"other three components{scope}; seeds averaged first)",
        rule="supported if p (Holm) < 0.05 and the median difference favours the claim; not supported if "
        "p (Holm) < 0.05 and it favours the other; else inconclusive",
    )
    data = table if pointwise is None else table[table["pointwise"].isin(pointwise)]
    others = [c for c in COMPONENTS if c != component]
    wide = data.pivot_table(index=[*by, *others], columns=component, values="value", aggfunc="mean")
    if a not in wide or b not in wide:
        f.summary = f"no matched pair of `{a}` and `{b}` cells"
        return f
    d = (wide[a] - wide[b]).dropna().to_numpy(dtype=float)
    nonzero = int(np.count_nonzero(d))
    f.numbers = {
        "pairs": int(d.size),
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "median_diff": float(np.median(d)) if d.size else np.nan,
        "mean_diff": float(np.mean(d)) if d.size else np.nan,
    }
    if nonzero == 0:
        f.summary = f"{d.size} matched pairs, no difference"
        return f
    res = ss.wilcoxon(d)
    f.pvalue = float(res.pvalue)
    f.numbers.update(statistic=float(res.statistic), pvalue=f.pvalue)
    f.summary = (
        f"`{a}` better in {f.numbers['wins']} of {d.size} matched pairs (worse in {f.numbers['losses']}), "
        f"median difference {f.numbers['median_diff']:+.2f}, mean {f.numbers['mean_diff']:+.2f} points; "
        f"Wilcoxon p = {_p(f.pvalue)}"
    )
    return f
