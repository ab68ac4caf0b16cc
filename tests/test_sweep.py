"""Sweep specs (validation with key and line), planning against the store, and sweeps on
Ray Tune: >= 40 trials, idempotent reruns, failures recorded and retried alone."""

from __future__ import annotations

import textwrap

import pytest

from study.cli import main
from study.store import Store
from study.sweep.plan import expand, make_plan
from study.sweep.spec import parse_spec
from taxonomy.errors import PrunetaxError

GOOD = """
[sweep]
name = "t"
store = "{store}"
cache_dir = "{cache}"
models = ["tiny_cnn"]
base_seeds = [0]
seeds = [0, 1]
signals = {signals}
signals_per_unit = 10

[resources]
cpus_per_trial = 1

[[runs]]
protocol = "sensitivity"
channels_per_step = 16
"""

SIGNALS = (
    '["aliases", "paper_best", "random", "oracle", '
    '{ input = "activation", pointwise = "taylor", distinct = true }]'
)


def _spec(tmp_path, extra: str = "", signals: str = SIGNALS, cache: str = "results/models") -> str:
    return textwrap.dedent(GOOD).format(store=tmp_path / "store", cache=cache, signals=signals) + extra


def test_spec_expands_to_the_expected_trials(tmp_path):
    spec = parse_spec(_spec(tmp_path))
    trials = expand(spec)
    # 11 aliases (paper_best are aliases) + random (5 draws) + oracle + activation-taylor distinct cells
    assert (len({t.signal for t in trials}) + 4) * 2 == len(trials) >= 40
    assert sorted(t.draw for t in trials if t.signal == "random" and t.seed == 0) == [0, 1, 2, 3, 4]
    assert {t.seed for t in trials} == {0, 1} and {t.base_seed for t in trials} == {0}
    plan = make_plan(spec)
    assert plan.stored_ok == 0 and len(plan.todo) == len(trials)
    assert all(len(u) <= 10 for u in plan.units)
    assert "to run" in plan.describe()


@pytest.mark.parametrize(
    ("extra", "where", "needle"),
    [
        ("retrain_step = 3\n", "[[runs]] #1.retrain_step (line 18)", "retrain_steps"),
        ("stop_acc = 140\n", "[[runs]] #1.stop_acc (line 18)", "less than or equal to 100"),
        ('[[runs]]\nprotocol = "sensitivty"\n', "[[runs]] #2.protocol (line 19)", "sensitivity"),
        ('[[runs]]\nsignals = ["taylor_f0"]\n', "[[runs]] #2.signals (line 19)", "taylor_fo"),
        ("[bogus]\n", "[bogus]", "unknown section"),
        ("[resources]\ngpus = 1\n", "", "not valid TOML"),
    ],
)
def test_bad_specs_name_the_key_and_line(tmp_path, extra, where, needle):
    with pytest.raises(PrunetaxError) as err:
        parse_spec(_spec(tmp_path, extra), "spec.toml")
    assert where in str(err.value) and needle in str(err.value)


def test_unknown_model_is_reported_with_its_line(tmp_path):
    text = _spec(tmp_path).replace('models = ["tiny_cnn"]', 'models = ["resnet2O"]')
    with pytest.raises(PrunetaxError, match=r"\[sweep\]\.models \(line 6\).*resnet20"):
        parse_spec(text, "spec.toml")


def test_cli_bad_spec_exits_2_and_runs_nothing(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(_spec(tmp_path, "test_interval = 0\n"))
    assert main(["sweep", str(path)]) == 2
    assert "test_interval (line 18)" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


@pytest.mark.ray
def test_sweep_runs_through_ray_and_resumes_idempotently(ray_cluster, model_cache, tmp_path, capsys):
    path = tmp_path / "spec.toml"
    fail = '\n[[runs]]\nprotocol = "sensitivity"\nsignals = ["l1_filter"]\neval_batch_size = 300\n'
    path.write_text(_spec(tmp_path, fail, cache=str(model_cache)))
    spec = parse_spec(path.read_text())
    n = len(expand(spec))
    assert n >= 42
    assert main(["sweep", str(path)]) == 1  # one run fails on purpose (2 trials: 2 x 300 > 400 eval images)
    out = capsys.readouterr().out
    assert f"{n - 2} trials ok, 2 failed" in out
    store = Store(tmp_path / "store")
    trials = store.load("trials")
    assert len(trials) == n and trials["run_key"].is_unique
    failed = trials[trials.status == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("eval_batch_size").all()
    steps = store.load("steps")
    assert set(steps["run_key"]) == set(trials.loc[trials.status == "ok", "run_key"])
    # rerunning a finished sweep does nothing and says so
    assert main(["sweep", str(path)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    # --retry-failed reruns only the failures
    before = trials.set_index("run_key")["finished_at"]
    assert main(["sweep", str(path), "--retry-failed"]) == 1
    after = store.load("trials").set_index("run_key")["finished_at"]
    changed = set(after.index[after != before.reindex(after.index)])
    assert changed == set(failed["run_key"])
