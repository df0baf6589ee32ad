"""What this container was given: its CPU share and its GPU device files.

No TensorFlow here: the gunicorn master sizes its workers with these before any model loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def available_cpus(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity, capped by the cgroup's CPU quota
    (`docker run --cpus`, a SageMaker instance's share), never the host's core count."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cpu_quota(Path(cgroup_root))
    return max(1, min(cpus, int(quota))) if quota is not None else cpus


def _cpu_quota(root: Path) -> float | None:
    """The quota in CPUs, from cgroup v2's cpu.max ("150000 100000") or v1's cfs files."""
    try:
        limit, period = (root / "cpu.max").read_text().split()[:2]
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:
        limit = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if limit <= 0 or period <= 0 else limit / period
    except (OSError, ValueError):
        return None


def given_gpus(dev_dir: str | Path = "/dev") -> list[str]:
    """The GPU device files (nvidia0, nvidia1, ...) the NVIDIA container runtime put here.

    The base image sets NVIDIA_VISIBLE_DEVICES=all whether or not a GPU was given, so the
    device files, not that variable, say what the container got.
    """
    try:
        names = [path.name for path in Path(dev_dir).iterdir()]
    except OSError:
        return []
    gpus = (name for name in names if re.fullmatch(r"nvidia\d+", name))
    return sorted(gpus, key=lambda name: int(name[len("nvidia") :]))
