"""``prunetax run`` and ``prunetax scores`` end to end on the embedded default."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from study.cli import main
from study.store import load


def _run(*args: str) -> int:
    return main(["run", "--model", "tiny_cnn", "--dataset", "digits", *args])


def test_run_writes_trials_and_skips_stored(model_cache, tmp_path, capsys):
    store = tmp_path / "store"
    args = [
        "--signal",
        "best_gradient,random",  # one flag, a comma-separated list
        "--channels-per-step",
        "8",
        "--store",
        str(store),
        "--cache-dir",
        str(model_cache),
    ]
    assert _run(*args) == 0
    out = capsys.readouterr().out
    assert "sparsity at a 5-point drop" in out
    trials, steps = load(store, "trials"), load(store, "steps")
    assert set(trials["signal"]) == {"activation-taylor2_gn-abs_sum-weights_removed", "random"}
    assert (trials["status"] == "ok").all()
    assert set(steps["run_key"]) == set(trials["run_key"])
    by_signal = trials.groupby("signal")
    assert by_signal.size()["random"] == 5 and sorted(by_signal.get_group("random")["draw"]) == [
        0,
        1,
        2,
        3,
        4,
    ]
    best = trials.set_index("signal").loc["activation-taylor2_gn-abs_sum-weights_removed"]
    rand = by_signal.get_group("random")["sparsity_at_5"]
    assert best["sparsity_at_5"] > rand.median()
    assert rand.nunique() > 1  # independent draws, not one trajectory five times
    assert _run(*args) == 0
    assert "already stored" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "resnet2O", "--signal", "l1_filter"], "resnet20"),
        (["--signal", "foo"], "foo"),
        (["--signal", "l1_filter", "--target-sparsity", "140"], "target_sparsity"),
        (["--signal", "l1_filter", "--protocol", "sensitivty"], "sensitivity"),
        (["--signal", "l1_filter", "--dataset", "cifar11"], "cifar10"),
    ],
)
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, args, needle):
    store = tmp_path / "store"
    assert main(["run", "--store", str(store), "--cache-dir", str(tmp_path / "cache"), *args]) == 2
    assert needle in capsys.readouterr().err
    assert not store.exists()


def test_scores_cover_every_channel_and_cross_check(model_cache, tmp_path, capsys):
    ckpt = next(model_cache.glob("tiny_cnn-*.pt"))
    out, dump = tmp_path / "scores.parquet", tmp_path / "inputs.pt"
    assert (
        main(
            [
                "scores",
                "--checkpoint",
                str(ckpt),
                "--dataset",
                "digits",
                "--signals",  # the deprecated spelling still works, with a note
                "all",
                "oracle",
                "--out",
                str(out),
                "--dump-inputs",
                str(dump),
            ]
        )
        == 2
    )  # `all` must stand alone
    err = capsys.readouterr().err
    assert "deprecated" in err and "stand alone" in err and not out.exists()
    assert (
        main(
            [
                "scores",
                "--checkpoint",
                str(ckpt),  # the dataset is the one the checkpoint names
                "--out",
                str(out),
                "--dump-inputs",
                str(dump),
            ]
        )
        == 0
    )
    frame = pd.read_parquet(out)
    from taxonomy.spec import all_cells

    assert frame["signal"].nunique() == len(all_cells()) and frame.groupby("signal").size().eq(80).all()
    inputs = torch.load(dump)
    assert inputs["x"].shape == (256, 1, 8, 8) and len(inputs["eval_indices"]) == 256
    # independent cross-check: mean activation (sum over the map, mean over examples) of the first conv
    from study.checkpoint import Checkpoint

    model = Checkpoint.load(ckpt).build_model()
    first = model.features[2]  # ReLU after conv 0 and BN: the `output` tap of features.0
    with torch.no_grad():
        seen = {}
        hook = first.register_forward_hook(lambda m, a, o: seen.__setitem__("a", o))
        model(inputs["x"])
        hook.remove()
    expected = seen["a"].sum(dim=(2, 3)).mean(0)
    got = frame[(frame.signal == "activation-value-sum-none") & (frame.layer == "features.0")]
    torch.testing.assert_close(
        torch.tensor(got.sort_values("channel")["score"].to_numpy()), expected.double(), rtol=1e-5, atol=1e-6
    )


def test_scores_rejects_checkpoint_of_another_dataset(model_cache, tmp_path, capsys):
    ckpt = next(model_cache.glob("tiny_cnn-*.pt"))
    assert (
        main(
            [
                "scores",
                "--checkpoint",
                str(ckpt),
                "--dataset",
                "digits16",
                "--out",
                str(tmp_path / "s.parquet"),
            ]
        )
        == 2
    )
    assert "trained on 'digits'" in capsys.readouterr().err
    assert not (tmp_path / "s.parquet").exists()


def test_scores_takes_signal_lists_like_run(model_cache, tmp_path):
    ckpt = next(model_cache.glob("tiny_cnn-*.pt"))
    out = tmp_path / "s.parquet"
    argv = ["scores", "--checkpoint", str(ckpt), "--signal", "l1_filter,taylor_fo", "--signal", "random"]
    assert main([*argv, "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert set(frame["signal"]) == {"weight-value-l1-none", "activation-taylor-abs_sum-l2", "random"}
    assert set(frame["dataset"]) == {"digits"}
