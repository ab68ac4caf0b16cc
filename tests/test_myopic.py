"""The myopic oracle (Persand et al. 2020; issue 13, item 4): candidates of the signal(s),
measured by brute force, the smallest loss change pruned; the oracle itself when k covers
every unit; its cost logged; lockstep runs equal solo runs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from study.groups import build_groups
from study.masks import MaskedModel
from study.protocols import make_protocol
from study.trajectory import Setup, tie_order
from study.unit_scores import Workspace, unit_scores
from taxonomy.errors import PrunetaxError
from taxonomy.spec import parse
from tests.nets import CLASSES, batch, make

TIMING = {"t_stats", "t_score", "t_prune", "t_retrain", "t_eval"}


def _setup(name: str = "residual") -> Setup:
    model, shape = make(name)
    x, y = batch(name, n=48, seed=3)
    tx, ty = batch(name, n=40, seed=4)
    groups = build_groups(model, shape)
    return Setup(
        model, groups, [(x[:24], y[:24]), (x[24:], y[24:])], (tx, ty), (x, y), 100 / CLASSES[name], 0
    )


def _eval_loss(model: torch.nn.Module, setup: Setup) -> float:
    x = torch.cat([b[0] for b in setup.eval_batches])
    y = torch.cat([b[1] for b in setup.eval_batches])
    with torch.no_grad():
        return F.cross_entropy(model.eval()(x), y, reduction="none").double().mean().item()


def _lowest(scores: torch.Tensor, masked: MaskedModel, k: int, ties: torch.Tensor) -> list[int]:
    """The k lowest-scoring units that could each be pruned (ties by position in ``ties``)."""
    group = masked.groups.unit_group
    alive = {g: int((masked.active & (group == g)).sum()) for g in group.tolist()}
    ok = [u for u in range(len(scores)) if masked.active[u] and alive[int(group[u])] > 1]
    rank = {int(u): i for i, u in enumerate(ties)}
    return sorted(ok, key=lambda u: (float(scores[u]), rank[u]))[:k]


def _brute_force_path(setup: Setup, signals: list[str], k: int, steps: int) -> list[tuple[str, int]]:
    """(unit pruned, candidates measured) per step: the signals' k lowest (seeded ties), each
    candidate's loss change measured on an independent masked copy, the smallest pruned."""
    names, ties = setup.groups.unit_names(), tie_order(setup.groups.n_units, setup.tie_seed)
    pruned: list[int] = []
    path = []
    for _ in range(steps):
        ws = Workspace(copy.deepcopy(setup.model), setup.groups)
        ws.masked.prune(pruned)
        scores, errors = unit_scores(ws, [parse(s) for s in signals], setup.eval_batches)
        assert not errors
        cands = list(dict.fromkeys(u for row in scores for u in _lowest(row, ws.masked, k, ties)))
        base = _eval_loss(ws.masked.model, setup)
        change = {}
        for u in cands:
            masked = MaskedModel(copy.deepcopy(setup.model), setup.groups)
            masked.prune([*pruned, u])
            change[u] = _eval_loss(masked.model, setup) - base
        best = min(cands, key=lambda u: (change[u], int((ties == u).nonzero())))
        pruned.append(best)
        path.append((names[best], len(cands)))
    return path


def test_the_myopic_oracle_prunes_the_measured_best_candidate():
    setup = _setup("chain")
    (result,) = make_protocol("myopic", k=2, target_sparsity=60.0).run(setup, [parse("l1_filter")])
    rows = result.rows[1:]
    expected = _brute_force_path(setup, ["l1_filter"], 2, len(rows))
    assert [(r["pruned"], r["oracle_evals"]) for r in rows] == expected
    assert result.rows[0].get("oracle_evals") is None  # step 0 measured nothing
    assert result.trial["oracle_evals"] == sum(r["oracle_evals"] for r in rows)  # the trials row's total
    plain = make_protocol("sensitivity", target_sparsity=60.0).run(setup, [parse("l1_filter")])[0]
    assert [r["pruned"] for r in plain.rows[1:]] != [r["pruned"] for r in rows]  # the measurement matters


def test_candidates_of_several_signals_are_pooled():
    setup = _setup("residual")
    protocol = make_protocol("myopic", k=2, candidates_from=("apoz", "l1_filter"), target_sparsity=35.0)
    (result,) = protocol.run(setup, [parse("taylor_fo")])
    rows = result.rows[1:]
    expected = _brute_force_path(setup, ["taylor_fo", "apoz", "l1_filter"], 2, len(rows))
    assert [(r["pruned"], r["oracle_evals"]) for r in rows] == expected
    assert max(r["oracle_evals"] for r in rows) > 2  # the signals nominate different units


def test_k_covering_every_unit_is_the_oracle():
    setup = _setup("residual")
    n = setup.groups.n_units
    (myopic,) = make_protocol("myopic", k=n).run(setup, [parse("l1_filter")])
    (oracle,) = make_protocol("sensitivity").run(setup, [parse("oracle")])
    assert [r["pruned"] for r in myopic.rows] == [r["pruned"] for r in oracle.rows]
    assert [r["test_acc"] for r in myopic.rows] == [r["test_acc"] for r in oracle.rows]
    names, group = setup.groups.unit_names(), setup.groups.unit_group.tolist()
    alive = {g: setup.groups.group_sizes[g] for g in set(group)}
    for row in myopic.rows[1:]:  # every unit that could go was measured: those of groups with 2+ left
        assert row["oracle_evals"] == sum(n for n in alive.values() if n > 1)
        alive[group[names.index(row["pruned"])]] -= 1


def test_lockstep_equals_each_signal_alone():
    setup = _setup("residual")
    protocol = make_protocol("myopic", k=3, target_sparsity=40.0)
    signals = [parse(s) for s in ("taylor_fo", "l1_filter", "random", "activation_voting")]
    together = protocol.run(setup, signals, draws=[0, 0, 2, 0])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    for i, signal in enumerate(signals):
        (alone,) = protocol.run(setup, [signal], draws=[[0, 0, 2, 0][i]])
        assert strip(alone.rows) == strip(together[i].rows), signal.id
        assert together[i].error is None


def test_parameters_are_validated_and_canonical():
    p = make_protocol("myopic", candidates_from=["taylor_fo", "activation-taylor-abs_sum-l2"], k=4)
    assert p.candidates_from == ("activation-taylor-abs_sum-l2",)  # an alias and its id: one run_key
    assert p.as_dict()["candidates_from"] == ["activation-taylor-abs_sum-l2"]
    with pytest.raises(PrunetaxError, match="taylor_fo"):
        make_protocol("myopic", candidates_from=["taylr_fo"])
    with pytest.raises(PrunetaxError, match="deterministic signals; got random"):
        make_protocol("myopic", candidates_from=["random"])
    with pytest.raises(PrunetaxError, match="`k`"):
        make_protocol("myopic", k=0)
    with pytest.raises(PrunetaxError, match="`k` applies to myopic"):
        make_protocol("sensitivity", k=3)


def test_a_coarse_step_prunes_the_best_measured_few():
    setup = _setup("residual")
    (result,) = make_protocol("myopic", k=1, channels_per_step=2, target_sparsity=30.0).run(
        setup, [parse("l1_filter")]
    )
    first = result.rows[1]
    assert first["n_pruned"] == 2 and first["oracle_evals"] == 2  # nominees: at least the step's units
    masked = MaskedModel(copy.deepcopy(setup.model), setup.groups)
    ws = Workspace(masked.model, setup.groups)
    scores, _ = unit_scores(ws, [parse("l1_filter")], setup.eval_batches)
    nominees = _lowest(scores[0], ws.masked, 2, tie_order(setup.groups.n_units, setup.tie_seed))
    names = setup.groups.unit_names()
    assert sorted(first["pruned"].split(";")) == sorted(names[u] for u in nominees)
