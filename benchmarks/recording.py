"""What every benchmark script records beside its numbers, and how it writes them.

Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path


def machine_facts() -> dict:
    """When and on what a measurement ran: UTC date, CPU count, machine architecture."""
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
            "machine": platform.machine()}


def write_results(path, results: dict) -> None:
    """Write ``results`` as indented JSON to ``path`` (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (tracing, caches)."""
    import numpy as np

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def embedded_test_images(n: int):
    """The first ``n`` embedded test images (seed 0), [n, 28, 28, 1] uint8."""
    import numpy as np

    from linksim.data import get_dataset

    x, _ = get_dataset("embedded").load("test", n, seed=0)
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return x
