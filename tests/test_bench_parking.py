"""scripts/bench/parking.py: bench-accuracy's unfinished runs travel in git to a fresh machine."""

import json

from scripts.bench import parking
from scripts.bench.accuracy import first_epoch


def _workdir(root):
    """A workdir as a cut-short invocation leaves it: default at epoch 4 (three checkpoints
    kept), the seed 2 epochs in, fast finished (no ledger), and the shared data."""
    workdir = root / "build"
    (workdir / "default-checkpoints").mkdir(parents=True)
    for name in ("ckpt-0002-000000.npz", "ckpt-0003-000000.npz", "ckpt-0004-000120.npz"):
        (workdir / "default-checkpoints" / name).write_text(name)
    (workdir / "default-units.json").write_text(json.dumps([[1, 184.2], [3, 206.4]]))
    (workdir / "seed-backup").mkdir()
    (workdir / "seed-backup" / "latest.weights.h5").write_text("weights")
    (workdir / "seed-epochs.json").write_text('[{"epoch": 1}, {"epoch": 2}]')
    (workdir / "seed-units.json").write_text(json.dumps([[1, 206.4]]))
    (workdir / "fast.json").write_text("{}")
    (workdir / "cifar10").mkdir()
    return workdir


def test_parks_each_unfinished_run_with_only_its_newest_checkpoint(tmp_path):
    workdir, parked = _workdir(tmp_path), tmp_path / "parked"
    assert parking.unfinished(workdir) == ["default", "seed"]
    for name in parking.unfinished(workdir):
        parking.park(workdir, name, parked)

    files = sorted(str(p.relative_to(parked)) for p in parked.rglob("*") if p.is_file())
    assert files == [
        "default/default-checkpoints/ckpt-0004-000120.npz",
        "default/default-units.json",
        "seed/seed-backup/latest.weights.h5",
        "seed/seed-epochs.json",
        "seed/seed-units.json",
    ]


def test_a_fresh_workdir_resumes_a_parked_run_where_it_stopped(tmp_path):
    workdir, parked, fresh = _workdir(tmp_path), tmp_path / "parked", tmp_path / "fresh"
    for name in ("default", "seed"):
        parking.park(workdir, name, parked)
    fresh.mkdir()

    assert parking.restore(fresh, "default", parked) and parking.restore(fresh, "seed", parked)
    assert (first_epoch(fresh, "default"), first_epoch(fresh, "seed")) == (4, 3)
    ledger = json.loads((fresh / "default-units.json").read_text())
    assert ledger == [[1, 184.2], [3, 206.4]]  # earlier epochs keep the unit they were timed in
    assert not parking.restore(fresh, "v1", parked)  # nothing parked for it

    parking.discard("default", parked)
    assert not (parked / "default").exists() and (parked / "seed").is_dir()


def test_a_workdir_with_its_own_state_is_not_overwritten_by_a_parked_copy(tmp_path):
    workdir, parked = _workdir(tmp_path), tmp_path / "parked"
    parking.park(workdir, "default", parked)
    (workdir / "default-checkpoints" / "ckpt-0005-000000.npz").write_text("newer")

    assert not parking.restore(workdir, "default", parked)
    assert first_epoch(workdir, "default") == 5


def test_parking_again_replaces_the_older_parked_copy(tmp_path):
    workdir, parked = _workdir(tmp_path), tmp_path / "parked"
    parking.park(workdir, "default", parked)
    (workdir / "default-checkpoints" / "ckpt-0005-000000.npz").write_text("newer")
    parking.park(workdir, "default", parked)

    kept = sorted(p.name for p in (parked / "default" / "default-checkpoints").iterdir())
    assert kept == ["ckpt-0005-000000.npz"]
