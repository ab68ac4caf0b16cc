"""Store integrity: every file carries the sha256 of its own bytes, so ``verify`` detects any
single-byte change; files of an older prunetax are notes; compaction never launders damage;
ok trials without steps are found; quarantine invalidates exactly what lost rows, and a
rerun restores the undamaged store; ``health`` lists what reports must mention."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from study.cli import main
from study.store import Store, StoreWarning, compact, health, load, verify, write_table
from study.store.checks import check_parquet, check_sources
from study.store.consistency import IDENTITY, LOST
from study.store.integrity import PLACEHOLDER
from study.store.layout import COMPACTED, SOURCES, current_generation
from study.store.schema import TRIALS
from taxonomy.errors import PrunetaxError
from tests.test_store_faults import sweep_units

SIGNALS = ("random", "taylor_fo")
VOLATILE = [
    "t_stats", "t_score", "t_prune", "t_retrain", "t_eval", "wall_s", "unit_size",
    "started_at", "finished_at", "host", "node",
]  # fmt: skip
"""Columns that differ between two runs of the same trial (timing, placement, bookkeeping)."""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A small synthetic store: steps compacted, then one more trial written loose."""
    from tests.synthetic_store import make_store

    root = tmp_path / "store"
    make_store(root, models=("tiny_cnn",), signals=SIGNALS, seeds=1, steps=3)
    compact(root, "steps")
    make_store(root, models=("tiny_resnet",), signals=("random",), seeds=1, steps=3, rank_tables=False)
    return root


def _flip(path: Path, pos: int, mask: int = 0x01) -> bytes:
    """Flip bits of byte ``pos`` of ``path``; returns the original bytes."""
    data = path.read_bytes()
    changed = bytearray(data)
    changed[pos] ^= mask
    path.write_bytes(bytes(changed))
    return data


def _missed(path: Path, check, positions) -> list[int]:  # noqa: ANN001
    """Positions whose flip ``check(path)`` does not report as an error (flipped in place)."""
    rng, missed = random.Random(str(path.name)), []
    data = path.read_bytes()
    fd = os.open(path, os.O_WRONLY)
    try:
        for pos in positions:
            os.pwrite(fd, bytes([data[pos] ^ rng.randrange(1, 256)]), pos)
            problem = check(path)
            if problem is None or problem.severity != "error":
                missed.append(pos)
            os.pwrite(fd, data[pos : pos + 1], pos)
    finally:
        os.close(fd)
    return missed


def _files(root: Path) -> dict[Path, object]:
    """Every store file with its checker."""
    out: dict[Path, object] = {}
    for path in sorted(root.rglob("*.parquet")):
        table = path.relative_to(root).parts[0]
        out[path] = lambda p, t=table: check_parquet(p, t)
    for path in root.rglob(SOURCES):
        out[path] = check_sources
    return out


def test_every_single_byte_flip_of_a_sample_of_store_files_is_detected(store):
    files = _files(store)
    assert all(check(p) is None for p, check in files.items())
    loose_steps = next((store / "steps").glob("*.parquet"))
    part = next((store / "steps" / COMPACTED).glob("g-*/part-*.parquet"))
    sample = [loose_steps, part, part.parent / SOURCES, next((store / "oracle").glob("*.parquet"))]
    flips = 0
    for path in sample:  # every byte of these
        size = path.stat().st_size
        assert _missed(path, files[path], range(size)) == [], path
        flips += size
    trials = next((store / "trials").glob("*.parquet"))  # 50 columns: its footer, and a sample of the rest
    size = trials.stat().st_size
    positions = [*range(size - 2500, size), *random.Random(0).sample(range(size - 2500), 800)]
    assert _missed(trials, files[trials], positions) == []
    assert flips + len(positions) > 15_000


@pytest.mark.slow
def test_every_single_byte_flip_of_every_store_file_is_detected(store):
    for path, check in _files(store).items():
        assert _missed(path, check, range(path.stat().st_size)) == [], path


def test_a_placeholder_in_the_data_is_written_without_statistics_and_still_checks(tmp_path):
    path = tmp_path / "steps" / "k.parquet"
    write_table(path, [{"run_key": "k", "step": 0, "pruned": PLACEHOLDER.decode()}], "steps")
    meta = pq.read_metadata(path)
    assert meta.row_group(0).column(2).statistics is None or not meta.row_group(0).column(2).is_stats_set
    assert verify(tmp_path).problems == []
    assert load(tmp_path, "steps")["pruned"].tolist() == [PLACEHOLDER.decode()]
    _flip(path, 10)
    assert [p.kind for p in verify(tmp_path).problems] == ["checksum"]


def _legacy(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    """Write ``rows`` the way prunetax wrote files before checksums."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")


def test_files_of_an_older_prunetax_are_notes_until_compaction_checksums_them(tmp_path, capsys):
    for i in range(3):
        row = {"run_key": f"k{i}", "schema_version": 1, "status": "failed", "signal": "random"}
        _legacy(tmp_path / "trials" / f"k{i}.parquet", [row], TRIALS)
    gen = tmp_path / "trials" / COMPACTED / "g-000001"
    _legacy(gen / "part-00000.parquet", [{"run_key": "old", "status": "failed"}], TRIALS)
    (gen / SOURCES).write_text("old\n")
    report = verify(tmp_path)
    assert report.ok and {p.kind for p in report.problems} == {"unchecksummed"} and len(report.problems) == 5
    assert main(["store", "verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "trials: 5 file(s) written by an older prunetax" in out[0]
    assert Store(tmp_path).keys() == {"k0", "k1", "k2", "old"}
    compact(tmp_path, "trials")
    assert verify(tmp_path).problems == [] and len(load(tmp_path, "trials")) == 4
    assert (current_generation(tmp_path / "trials") / SOURCES).read_bytes().startswith(b"#sha256:")


def test_a_damaged_sources_list_is_an_error_once_its_parts_are_checksummed(store):
    sources = next((store / "steps" / COMPACTED).glob("g-*")) / SOURCES
    text = sources.read_bytes()
    sources.write_bytes(text[text.index(b"\n") + 1 :])  # the checksum line removed
    assert [(p.path, p.kind) for p in verify(store).problems] == [(sources, "checksum")]
    sources.write_bytes(text.replace(b"\n", b"\nextra\n", 1))
    assert [p.kind for p in verify(store).problems] == ["checksum"]


def test_a_lost_sources_list_is_rebuilt_by_quarantine(store):
    gen = next((store / "steps" / COMPACTED).glob("g-*"))
    keys = Store(store).keys("steps")
    (gen / SOURCES).unlink()
    assert [(p.path, p.kind) for p in verify(store).problems] == [(gen / SOURCES, "unreadable")]
    verify(store, quarantine=True)
    assert verify(store).problems == [] and Store(store).keys("steps") == keys


def test_compaction_never_folds_a_damaged_file_into_a_fresh_checksum(store):
    loose = next((store / "trials").glob("*.parquet"))
    _flip(loose, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        result = compact(store, "trials")
    assert result.skipped == (str(loose),) and loose.exists()
    assert [(p.path, p.kind) for p in verify(store).problems] == [(loose, "checksum")]
    part = next((store / "steps" / COMPACTED).glob("g-*/part-*.parquet"))
    _flip(part, 200)
    with pytest.raises(PrunetaxError, match="verify"):
        compact(store, "steps")


def test_ok_trials_without_all_their_steps_are_found_and_quarantine_invalidates_them(store):
    trials = load(store, "trials").set_index("run_key")
    (loose,) = (store / "steps").glob("*.parquet")
    loose.unlink()  # a steps file gone
    short = sorted(set(trials.index) - {loose.stem})[0]  # and a curve cut short
    Store(store).write("steps", short, load(store, "steps", filters=[("run_key", "==", short)]).iloc[:2])
    report = verify(store)
    assert sorted((p.kind, p.key) for p in report.problems) == sorted(
        [("missing_steps", loose.stem), ("missing_steps", short)]
    )
    assert health(store).trials_without_steps == sorted([loose.stem, short])
    assert main(["store", "verify", str(store), "--quarantine"]) == 1
    assert Store(store).done() == set(trials.index) - {loose.stem, short}
    after = load(store, "trials").set_index("run_key")
    assert after.loc[[loose.stem, short], "status"].eq(LOST).all()
    assert after.loc[short, "error"].startswith(f"{LOST}: its steps rows were lost")
    kept = [c for c in IDENTITY if c not in ("finished_at", "node")]
    pd.testing.assert_frame_equal(after.loc[[short], kept[1:]], trials.loc[[short], kept[1:]])
    assert after.loc[short, ["auc", "n_steps"]].isna().all()  # results cleared
    report = verify(store)
    assert report.ok and sorted(p.key for p in report.problems) == sorted([loose.stem, short])
    assert health(store).invalidated == sorted([loose.stem, short]) and health(store).ok


def test_a_rank_job_without_its_scores_is_found_and_invalidated(store):
    (scores,) = (store / "scores").glob("*.parquet")
    key = scores.stem
    compact(store, "oracle")
    assert Store(store).has("oracle", key)
    scores.unlink()
    report = verify(store)
    assert [(p.kind, p.key) for p in report.problems] == [("missing_scores", key)]
    assert health(store).rank_jobs_without_scores == [key]
    report = verify(store, quarantine=True)
    assert report.invalidated == [key] and not Store(store).has("oracle", key)
    assert verify(store).problems == []


def _reads_keys(path: Path) -> bool:
    try:
        pq.read_table(path, columns=["run_key"])
    except (OSError, pa.ArrowException):
        return False
    return True


def test_health_lists_every_file_a_read_skips(store):
    loose = next((store / "trials").glob("*.parquet"))
    loose.write_bytes(loose.read_bytes()[:-20])  # truncated: the footer is gone
    part = next((store / "steps" / COMPACTED).glob("g-*/part-*.parquet"))
    original = part.read_bytes()
    for pos in range(4, len(original)):  # a flip that only a full read notices (not footer, not key)
        _flip(part, pos, 0xFF)
        try:
            pq.read_table(part, columns=["run_key"])
            pq.read_table(part)
        except (OSError, pa.ArrowException):
            if check_parquet(part, "steps", deep=False) is None and _reads_keys(part):
                break
        part.write_bytes(original)
    else:
        pytest.fail("no data-page flip found")
    found = health(store)
    assert [p for p, _ in found.damaged] == [str(loose.relative_to(store))]
    assert not found.ok
    with pytest.warns(StoreWarning):
        load(store, "steps")  # a full read skips the part: health lists it from now on
    found = health(store)
    assert [p for p, _ in found.damaged] == sorted(
        [str(loose.relative_to(store)), str(part.relative_to(store))]
    )
    assert all(why.startswith("unreadable") for _, why in found.damaged)
    in_part = set(pq.read_table(part, columns=["run_key"])["run_key"].to_pylist())
    assert found.trials_without_steps == sorted(in_part - {loose.stem})  # the truncated one has no row
    assert any("verify" in line for line in found.lines())


def result_tables(root: Path) -> dict[str, pd.DataFrame]:
    """The deduplicated trials and steps, sorted, without the :data:`VOLATILE` columns."""
    out = {}
    for table, keys in (("trials", ["run_key"]), ("steps", ["run_key", "step"])):
        frame = load(root, table)
        out[table] = frame.drop(columns=[c for c in VOLATILE if c in frame]).sort_values(keys)
        out[table] = out[table].reset_index(drop=True)
    return out


def test_quarantine_and_rerun_restore_the_undamaged_store(model_cache, tmp_path):
    from study.sweep.work import run_unit
    from study.trial import TrialSpec

    root = tmp_path / "store"
    units, ctx = sweep_units(root, model_cache, seeds="[0, 1]")
    assert len(units) == 2
    run_unit(units[0], ctx)
    compact(root, "steps")
    run_unit(units[1], ctx)
    clean = result_tables(root)
    first = {TrialSpec.from_dict(t).run_key for t in units[0]["trials"]}
    part = next((root / "steps" / COMPACTED).glob("g-*/part-*.parquet"))  # the first unit's steps
    _flip(part, part.stat().st_size // 3)
    second = sorted(TrialSpec.from_dict(t).run_key for t in units[1]["trials"])
    victim = root / "trials" / f"{second[0]}.parquet"  # a trial row of the second unit
    _flip(victim, 120)
    assert {p.kind for p in verify(root).problems} == {"checksum", "missing_steps"}
    report = verify(root, quarantine=True)
    assert sorted(report.invalidated) == sorted(first) and verify(root).ok
    todo, ctx = sweep_units(root, model_cache, seeds="[0, 1]")
    assert {TrialSpec.from_dict(t).run_key for u in todo for t in u["trials"]} == first | {victim.stem}
    for unit in todo:
        run_unit(unit, ctx)
    assert verify(root).problems == []
    rerun = result_tables(root)
    for table in clean:
        pd.testing.assert_frame_equal(rerun[table], clean[table])
