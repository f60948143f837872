"""What every benchmark script records beside its numbers, and how it writes them.

Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
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
