"""Wall time of ``linksim validate`` as editors and CI call it, and whether it imports TensorFlow.

For each shipped scenario: ``python -m linksim.cli validate FILE`` in a fresh process
(interpreter start-up included), median of 5; then all scenarios in one call; then,
in this process, whether validating imported ``tensorflow`` (it must not).

Target (issue 15): well under a second per file (it was about 6 s, the TensorFlow
import), and no TensorFlow import.

Usage::

    python benchmarks/validate_speed.py

Writes ``benchmarks/results/validate_speed.json``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from recording import machine_facts, write_results

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def wall(*files: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "linksim.cli", "validate", *files], cwd=REPO, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def imports_tensorflow() -> bool:
    code = ("import sys; from linksim.cli import main; "
            "rc = main(['validate', *sys.argv[1:]]); assert rc == 0; print('tensorflow' in sys.modules)")
    files = sorted(str(p) for p in (REPO / "scenarios").glob("*.yaml"))
    out = subprocess.run([sys.executable, "-c", code, *files], cwd=REPO, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def main() -> dict:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "scenarios").glob("*.yaml"))
    per_file = {f: statistics.median(wall(f) for _ in range(5)) for f in files}
    all_at_once = statistics.median(wall(*files) for _ in range(3))
    startup = statistics.median(
        (lambda t: (subprocess.run([sys.executable, "-c", "pass"], check=True), time.perf_counter() - t)[1])(
            time.perf_counter()) for _ in range(5))
    results = {"machine": machine_facts(), "target_s_per_file": TARGET_S, "python_startup_s": round(startup, 3),
               "per_file_s": {f: round(v, 3) for f, v in per_file.items()},
               "max_per_file_s": round(max(per_file.values()), 3),
               "all_files_one_call_s": round(all_at_once, 3), "files": len(files),
               "imports_tensorflow": imports_tensorflow()}
    results["met"] = results["max_per_file_s"] < TARGET_S and not results["imports_tensorflow"]
    write_results(REPO / "benchmarks" / "results" / "validate_speed.json", results)
    print(f"validate: at most {results['max_per_file_s']:.3f} s per file (Python start-up "
          f"{startup:.3f} s), {len(files)} files in one call {all_at_once:.3f} s, "
          f"imports TensorFlow: {results['imports_tensorflow']}")
    return results


if __name__ == "__main__":
    main()
