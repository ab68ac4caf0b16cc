"""Tidy frames read from the results store (the one door from ``analysis`` to the store).

Every function takes ``store`` as a path to the store root or a :class:`study.store.Store`
and returns pandas frames with the store's explicit schema plus a few derived columns.
Torch-free: this module imports only :mod:`study.store` and the torch-free parts of
:mod:`taxonomy`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pandas as pd

from analysis.design import protocol_labels
from study.store import Store, load
from taxonomy.aliases import aliases_of
from taxonomy.spec import parse

__all__ = ["load_trials", "load_steps", "load_rank_tables", "add_identity", "IDENTITY", "SIG_COLUMNS"]

SIG_COLUMNS = ("sig_input", "sig_pointwise", "sig_reduction", "sig_scaling")
"""The four component columns of ``trials`` (null for the references)."""

IDENTITY = (
    "task",
    "model",
    "dataset",
    "protocol",
    "protocol_label",
    "signal",
    *SIG_COLUMNS,
    "sig_class",
    "family",
    "alias",
    "seed",
    "base_seed",
    "draw",
)
"""Identity columns of one trial carried through every per-trial frame."""

_REFERENCES = frozenset({"random", "oracle"})


def _root(store: str | Path | Store) -> Path:
    return store.root if isinstance(store, Store) else Path(store)


@cache
def _alias(signal: str) -> str:
    try:
        spec = parse(signal)
    except ValueError:
        return ""
    return "" if spec.is_reference else "/".join(aliases_of(spec))


def add_identity(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``trials`` with the derived columns ``family``, ``alias``,
    ``protocol_label``, ``draw`` and ``task``.

    ``family`` is ``"reference"`` for ``random``/``oracle`` (or any row without a
    pointwise component), else the pointwise id (colour key for plots). ``alias`` is the
    literature name(s) of the exact signal (``/``-joined when several; ``""`` when none).
    ``protocol_label`` is the protocol plus its non-default variant parameters
    (:func:`analysis.design.protocol_labels`): trials of different labels are different
    experiments. ``draw`` numbers the independent draws of ``random`` (0 when missing).
    ``task`` is ``"model/dataset/protocol_label"``. Existing columns are left as they are.
    """
    out = trials.copy()
    if "family" not in out:
        pointwise = out["sig_pointwise"].astype(object)
        is_ref = out["signal"].isin(_REFERENCES) | pointwise.isna()
        out["family"] = pointwise.where(~is_ref, "reference").astype(str)
    if "alias" not in out:
        out["alias"] = out["signal"].map(lambda s: _alias(str(s))).astype(str)
    if "protocol_label" not in out:
        out["protocol_label"] = protocol_labels(out).astype(str)
    draw = out["draw"] if "draw" in out else pd.Series(0, index=out.index)
    out["draw"] = pd.to_numeric(draw, errors="coerce").fillna(0).astype("int64")
    if "task" not in out:
        label = out["protocol_label"].astype(str)
        out["task"] = out["model"].astype(str) + "/" + out["dataset"].astype(str) + "/" + label
    return out


def load_trials(
    store: str | Path | Store, status: str | None = "ok", newest_version: bool = True
) -> pd.DataFrame:
    """The ``trials`` table, one row per run_key, with ``family``, ``alias`` and ``task``.

    Parameters
    ----------
    store
        Store root or :class:`~study.store.Store`.
    status
        Keep only trials with this ``status`` (``"ok"``, ``"failed"``); ``None`` keeps all.
    newest_version
        Keep only the trials of the newest ``trial_version`` in the store (rows without one
        are the oldest). A trial computed by an older engine has its own run_key, so a store
        that mixes versions would otherwise count a signal twice; ``attrs["older_versions"]``
        says how many were left out.

    Returns
    -------
    DataFrame
        Every column of the ``trials`` schema (see ``study/store/schema.py``), the newest
        row per ``run_key`` (by ``finished_at``), plus ``family`` (``"reference"`` or the
        pointwise id), ``alias`` (literature alias or ``""``), ``protocol_label``, ``draw``
        and ``task`` (``"model/dataset/protocol_label"``); see :func:`add_identity`.
    """
    trials = load(_root(store), "trials")
    if len(trials) and trials["run_key"].duplicated().any():
        trials = trials.sort_values("finished_at", kind="stable").drop_duplicates("run_key", keep="last")
    older = 0
    if newest_version and len(trials) and "trial_version" in trials:
        version = trials["trial_version"].fillna(0)
        newest = version == version.max()
        older = int((~newest).sum())
        trials = trials[newest]
    if status is not None:
        trials = trials[trials["status"] == status]
    out = add_identity(trials.reset_index(drop=True))
    out.attrs["older_versions"] = older
    return out


def load_steps(
    store: str | Path | Store,
    run_keys: Iterable[str] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """The ``steps`` table sorted by (``run_key``, ``step``).

    Parameters
    ----------
    store
        Store root or :class:`~study.store.Store`.
    run_keys
        Keep only these trials (default: all).
    columns
        Read only these columns (``run_key`` and ``step`` are always read).

    Returns
    -------
    DataFrame
        The ``steps`` schema's columns: ``run_key``, ``step`` (0 = unpruned),
        ``sparsity``/``macs_sparsity`` (%), ``test_acc`` (%, NaN when not evaluated),
        ``retrain_steps`` and the rest (see ``study/store/schema.py``).
    """
    if columns is not None:
        columns = list(dict.fromkeys(["run_key", "step", *columns]))
    if run_keys is None:
        steps = load(_root(store), "steps", columns)
    else:
        keys = list(dict.fromkeys(run_keys)) or [""]  # no run_key is empty: an empty frame
        steps = load(_root(store), "steps", columns, filters=[("run_key", "in", keys)])
    return steps.sort_values(["run_key", "step"], kind="stable").reset_index(drop=True)


def load_rank_tables(store: str | Path | Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The unit-level ``scores`` and the ``oracle`` tables, for :mod:`analysis.rank_quality`.

    Returns
    -------
    scores : DataFrame
        Rows of ``scores`` with ``level == "unit"``: ``run_key``, ``model``, ``dataset``,
        ``base_seed``, ``seed``, ``tap``, ``level``, ``signal``, ``layer``, ``channel``,
        ``unit``, ``score`` (lower = pruned first).
    oracle : DataFrame
        ``run_key``, ``model``, ``dataset``, ``base_seed``, ``seed``, ``unit``,
        ``unit_name``, ``layer``, ``loss_change`` (lower = less important).
    """
    root = _root(store)
    scores = load(root, "scores")
    scores = scores[scores["level"] == "unit"].reset_index(drop=True)
    return scores, load(root, "oracle")
