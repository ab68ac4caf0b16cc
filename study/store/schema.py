"""The results store's tables: one explicit, versioned pyarrow schema each.

Every file is cast to these schemas before it is written and read back with them, so
a column never silently disappears or changes type. Evolution only adds nullable
columns; renaming or retyping bumps ``SCHEMA_VERSION``. ``macs*`` columns count
multiply-adds of convs and linear layers per image (fvcore's "flops" convention).
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "TRIALS",
    "STEPS",
    "SCORES",
    "ORACLE",
    "RANK_QUALITY",
    "ACTIVITY",
    "schema_of",
]

SCHEMA_VERSION = 1

_S, _F, _I = pa.string(), pa.float64(), pa.int64()
_TS = pa.timestamp("us", tz="UTC")


def _schema(name: str, fields: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={b"prunetax_table": name.encode(), b"prunetax_schema_version": str(SCHEMA_VERSION).encode()},
    )


# fmt: off
TRIALS = _schema("trials", [
    ("run_key", _S), ("schema_version", pa.int32()), ("status", _S), ("error", _S), ("traceback", _S),
    ("model", _S), ("dataset", _S), ("seed", _I), ("base_seed", _I), ("signal", _S),
    ("sig_input", _S), ("sig_pointwise", _S), ("sig_reduction", _S), ("sig_scaling", _S), ("sig_class", _S),
    ("protocol", _S), ("protocol_json", _S), ("spec_json", _S), ("tap", _S),
    ("reference_acc", _F), ("base_checkpoint", _S), ("split_fingerprint", _S), ("eval_examples", _S),
    ("sparsity_at_1", _F), ("sparsity_at_2", _F), ("sparsity_at_5", _F), ("sparsity_at_10", _F),
    ("macs_sparsity_at_5", _F), ("auc", _F), ("final_sparsity", _F), ("final_acc", _F),
    ("retrain_steps_at_5", _I), ("n_steps", _I), ("stop_reason", _S),
    ("initial_weights", _I), ("initial_macs", _I), ("initial_units", _I),
    ("wall_s", _F), ("unit_size", _I), ("t_stats", _F), ("t_score", _F), ("t_prune", _F),
    ("t_retrain", _F), ("t_eval", _F),
    ("prunetax_version", _S), ("torch_version", _S), ("device", _S), ("host", _S),
    ("started_at", _TS), ("finished_at", _TS),
    ("trial_version", _I), ("draw", _I), ("aggregation", _S), ("units_per_step", _I), ("tie_seed", _I),
    ("n_test", _I), ("node", _S),
    ("started_from", _S), ("train_steps", _I), ("train_macs", _I), ("train_macs_dense", _I),
    ("train_macs_saved", _F), ("oracle_evals", _I),
])
"""One row per trial. ``status`` is ``ok`` or ``failed`` (then ``error``/``traceback`` say why).

``trial_version`` is the engine's result version (results of an older version are never
mixed with newer ones); ``draw`` numbers the independent draws of the ``random``
reference within one repeat (0 for every other signal); ``aggregation`` is how a coupled
unit's score is formed (``pooled`` by default); ``units_per_step`` the units pruned per
greedy step (more than 1 = a coarse run); ``tie_seed`` seeds the permutation that breaks
score ties; ``n_test`` the test-set size (binomial standard error); ``node`` the Ray node
that ran the trial.

Protocols that train (``cucb``, ``gated``; null for the others, which prune the base model):
``started_from`` (``scratch``: a new network initialised as the base model was; ``base``: the
base model), ``train_steps`` (their SGD steps), ``train_macs`` (multiply-adds executed while
training: 3 x batch size x the forward MACs per image of each step's executed channels),
``train_macs_dense`` (the same for dense training with the same recipe) and
``train_macs_saved`` (100 x (1 - train_macs / train_macs_dense), %).

``oracle_evals``: networks whose eval loss the trial measured to choose its units, summed
over its steps (``myopic``, ``best_of_n``; null for the others)."""

STEPS = _schema("steps", [
    ("run_key", _S), ("step", _I), ("pruned", _S), ("n_pruned", _I),
    ("units_remaining", _I), ("channels_remaining", _I), ("weights_remaining", _I), ("macs_remaining", _I),
    ("sparsity", _F), ("macs_sparsity", _F), ("test_acc", _F), ("test_loss", _F), ("eval_loss", _F),
    ("score", _F), ("retrain_steps", _I),
    ("t_stats", _F), ("t_score", _F), ("t_prune", _F), ("t_retrain", _F), ("t_eval", _F),
    ("oracle_evals", _I), ("finetune_acc", _F),
    ("macs_p5", _F), ("macs_p25", _F), ("macs_p50", _F), ("macs_p75", _F), ("macs_p95", _F),
])
"""One row per pruning step (step 0 = unpruned). ``test_acc`` in percent, NaN when the
step was not evaluated (``test_interval``); ``pruned`` lists ``root_conv:channel`` ids.
``oracle_evals``: networks whose eval loss was measured to choose the step's units (the
myopic oracle's candidates, best-of-N's masks); null for protocols that measure none.
``finetune_acc``: test accuracy (%) after a short fine-tune of the step's network (``cucb``;
``test_acc`` is before it). ``macs_p5`` ... ``macs_p95``: under per-input gates (``gated``),
the 5th, 25th, 50th, 75th and 95th percentiles over test images of the MACs executed per
image (``macs_remaining`` is then their mean, rounded; ``macs_sparsity`` uses the exact mean)."""

SCORES = _schema("scores", [
    ("run_key", _S), ("model", _S), ("dataset", _S), ("base_seed", _I), ("seed", _I), ("tap", _S),
    ("level", _S), ("signal", _S), ("layer", _S), ("channel", _I), ("unit", _I), ("score", _F),
    ("step", _I),
])
"""Scores of signals on the unpruned network. ``level`` = ``channel`` (one row per conv
channel, ``prunetax scores``) or ``unit`` (one row per coupled unit, scored as the
protocol ranks it; ``layer``/``channel`` name the unit's root conv channel)."""

ORACLE = _schema("oracle", [
    ("run_key", _S), ("model", _S), ("dataset", _S), ("base_seed", _I), ("seed", _I),
    ("unit", _I), ("unit_name", _S), ("layer", _S), ("loss_change", _F), ("step", _I),
])
"""Measured loss change of removing each active unit. ``step`` 0 (or null) = the unpruned
network; step k = after the oracle's own k-th greedy prune (rank quality along its trajectory)."""

RANK_QUALITY = _schema("rank_quality", [
    ("run_key", _S), ("model", _S), ("dataset", _S), ("base_seed", _I), ("seed", _I), ("signal", _S),
    ("scope", _S), ("spearman", _F), ("kendall", _F), ("n_units", _I), ("step", _I),
])
"""Rank correlation of each signal's unit ranking with the oracle (``scope`` = global or a layer)."""

ACTIVITY = _schema("activity", [
    ("run_key", _S), ("model", _S), ("dataset", _S), ("base_seed", _I), ("seed", _I), ("tap", _S),
    ("layer", _S), ("channel", _I), ("unit", _I), ("nonlinearity", _S), ("n_examples", _I),
    ("zero_fraction", _F), ("variance", _F), ("layer_variance", _F), ("dead", pa.bool_()),
    ("constant", pa.bool_()), ("dead_threshold", _F), ("constant_tolerance", _F), ("step", _I),
])
"""Dead and constant channels of the unpruned network (Evci et al. 2018; :mod:`study.dead_units`),
one row per conv channel, written by rank-quality jobs: ``zero_fraction`` = share of eval inputs
on which the channel's map after the nonlinearity (``tap`` = output) is all 0, ``dead`` =
``zero_fraction >= dead_threshold``; ``variance`` = its activation variance across the eval
inputs (per element, averaged over the map), ``constant`` = ``variance <= constant_tolerance x
layer_variance`` (the mean over the layer's channels). ``nonlinearity`` is empty where none follows."""
# fmt: on

TABLES: dict[str, pa.Schema] = {
    "trials": TRIALS,
    "steps": STEPS,
    "scores": SCORES,
    "oracle": ORACLE,
    "rank_quality": RANK_QUALITY,
    "activity": ACTIVITY,
}


def schema_of(table: str) -> pa.Schema:
    """The schema of ``table`` (clear error for an unknown table)."""
    from taxonomy.errors import invalid

    if table not in TABLES:
        raise invalid("table", table, TABLES)
    return TABLES[table]
