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
        ("stop_acc = 140\n", "[[runs]] #1.stop_acc (line 18)", "`stop_acc` must be a number >= 0, <= 100"),
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
    # a trial that fails at run time (not in planning): retraining at lr 1e30 turns the weights to NaN
    fail = (
        '\n[[runs]]\nprotocol = "retrain"\nsignals = ["l1_filter"]\nchannels_per_step = 16\n'
        "retrain_lr = 1e30\nretrain_steps = 2\n"
    )
    path.write_text(_spec(tmp_path, fail, cache=str(model_cache)))
    spec = parse_spec(path.read_text())
    n = len(expand(spec))
    assert n >= 42
    assert main(["sweep", str(path)]) == 1  # one run fails on purpose (2 trials: NaN scores)
    out = capsys.readouterr().out
    assert f"{n - 2} trials ok, 2 failed" in out and "(ETA " in out
    store = Store(tmp_path / "store")
    trials = store.load("trials")
    assert len(trials) == n and trials["run_key"].is_unique
    failed = trials[trials.status == "failed"]
    assert len(failed) == 2 and failed["error"].str.contains("NaN").all()
    steps = store.load("steps")
    # every ok trial has its steps (a failed one keeps the steps it ran before its NaN scores)
    assert (
        set(trials.loc[trials.status == "ok", "run_key"]) <= set(steps["run_key"]) <= set(trials["run_key"])
    )
    # rerunning a finished sweep does nothing and says so
    assert main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "base models needed" not in out and len(out.splitlines()) == 2
    # --retry-failed reruns only the failures
    before = trials.set_index("run_key")["finished_at"]
    assert main(["sweep", str(path), "--retry-failed"]) == 1
    after = store.load("trials").set_index("run_key")["finished_at"]
    changed = set(after.index[after != before.reindex(after.index)])
    assert changed == set(failed["run_key"])


def test_an_idle_plan_says_so_in_one_line(tmp_path):
    plan = make_plan(parse_spec(_spec(tmp_path)))
    plan.todo, plan.jobs_todo, plan.units, plan.base_models = [], [], [], []
    assert plan.nothing_to_do
    text = plan.describe()
    assert "\n" not in text and "base models needed" not in text
    assert text.endswith(f"all {len(plan.trials)} trials are stored")


def test_the_dry_run_lists_signals_per_run_and_network(tmp_path, capsys):
    from study.groups import network_context
    from taxonomy.equivalence import distinct

    text = _spec(tmp_path, signals='["distinct"]').replace('["tiny_cnn"]', '["tiny_cnn", "tiny_resnet"]')
    text += '\n[[runs]]\nsignals = ["l1_filter", "random"]\naggregation = "sum"\n'
    path = tmp_path / "spec.toml"
    path.write_text(text)
    assert main(["sweep", str(path), "--dry-run", "--list"]) == 0
    out = capsys.readouterr().out
    run1, run2 = out.split("[[runs]] #1: sensitivity on digits\n")[1].split("[[runs]] #2")
    for model in ("tiny_cnn", "tiny_resnet"):
        n = len(distinct(network_context(model)))
        assert f"  {model} ({network_context(model).describe()}): {n} signals" in run1
    assert (
        "  tiny_resnet: the same 2 signals as tiny_cnn" in run2
        and "    weight-value-l1-none  (l1_filter)" in run2
    )
    assert not (tmp_path / "store").exists()


def test_progress_eta_comes_from_measured_unit_times():
    from study.sweep.progress import Progress, slots

    lines = []
    progress = Progress(100, lines.append, parallel=2, jobs=2)
    assert progress.eta() == "?"  # nothing measured yet
    progress.announce(10)
    assert lines[-1] == "running 100 trials and 2 rank jobs in 10 work units, 2 at a time"
    progress.add({"ok": 10, "failed": 0, "jobs": 0, "compute_s": 20.0})  # 2 s per trial, units of 10
    assert lines[-1].endswith("trials done 10, failed 0, remaining 90; rank jobs 0/2 (ETA >= 90s)")
    progress.add({"failed": 5})  # a dead unit's trials: counted, not measured
    progress.add({"ok": 0, "failed": 0, "jobs": 1, "compute_s": 30.0})
    # 85 trials x 2 s + 1 job x 30 s over min(2 slots, 9 + 1 units)
    assert progress.eta() == f"{(85 * 2 + 30) / 2:.0f}s"
    assert slots({"CPU": 16.0, "GPU": 2.0}, 1, 0.5, None) == 4 and slots({"CPU": 8.0}, 2, 0, 3) == 3
    assert slots({"CPU": 1.0}, 4, 0, None) == 1


def test_base_models_are_reported_with_their_accuracy(model_cache):
    from study.checkpoint import Checkpoint
    from study.sweep.progress import base_model_line

    path = next(model_cache.glob("tiny_cnn-*.pt"))
    test = 100 * Checkpoint.load(path).accuracy["test"]
    line = base_model_line(("tiny_cnn", "digits", 0), path, 1, 3, None)
    assert line.startswith("  [1/3] base model tiny_cnn/digits/s0: test accuracy ") and f"{test:.2f}%" in line
    failed = base_model_line(("tiny_cnn", "digits", 1), path, 2, 3, "PrunetaxError: diverged")
    assert failed == "  [2/3] base model tiny_cnn/digits/s1 failed: PrunetaxError: diverged"
