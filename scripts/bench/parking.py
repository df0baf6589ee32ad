"""Park bench-accuracy's unfinished runs in git, so that a session on a fresh machine
resumes them (the seed's 50 seed-epochs outlast a sitting on a slow day).

    python -m scripts.bench.parking [--workdir build/bench]   # then commit bench/parked/

A run's resume state is everything in the workdir named `<run>-*`: our runs' checkpoint
folder and the seed's backup, their epoch records, and the `<run>-units.json` ledger of
the unit each invocation timed (a run has a ledger from its start until it finishes, so
the ledger marks it unfinished). Parking copies that state to bench/parked/<run>/, of a
checkpoint folder only the newest checkpoint. bench-accuracy restores a parked run when
its workdir has none of its own, and removes the parked copy once the run finishes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from sagevit.training.checkpoints import CheckpointDir

log = logging.getLogger("bench")

PARKED = Path(__file__).resolve().parents[2] / "bench" / "parked"
LEDGER = "-units.json"  # <run>-units.json: the run started and has not finished


def unfinished(workdir: Path) -> list[str]:
    """The runs with a units ledger in `workdir`: started and not finished."""
    return sorted(p.name.removesuffix(LEDGER) for p in workdir.glob(f"*{LEDGER}"))


def park(workdir: Path, name: str, parked: Path = PARKED) -> Path:
    """Copy run `name`'s resume state from `workdir` to `parked`/`name` (replacing it)."""
    target = parked / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in workdir.glob(f"{name}-*"):
        newest = CheckpointDir(path).checkpoints()[:1]  # of a checkpoint folder, the newest
        if newest:
            (target / path.name).mkdir()
            shutil.copy2(newest[0], target / path.name / newest[0].name)
        elif path.is_dir():
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)
    log.info("parked %s in %s: %s", name, target, sorted(p.name for p in target.iterdir()))
    return target


def restore(workdir: Path, name: str, parked: Path = PARKED) -> bool:
    """Copy a parked run into `workdir` unless it has state of its own for it; True if so."""
    source = parked / name
    if not source.is_dir() or any(workdir.glob(f"{name}-*")):
        return False
    shutil.copytree(source, workdir, dirs_exist_ok=True)
    log.info("resuming %s from %s", name, source)
    return True


def discard(name: str, parked: Path = PARKED) -> None:
    """Remove a finished run's parked copy (the commit with its result drops it from git)."""
    shutil.rmtree(parked / name, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    args = parser.parse_args(argv)
    names = unfinished(args.workdir)
    if not names:
        print(f"no unfinished run in {args.workdir}")
    for name in names:
        print(park(args.workdir, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
