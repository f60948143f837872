"""The run directory: resume, writing results, provenance (``meta.json``) and example images.

A run directory holds

- ``scenario.yaml``: the resolved scenario (every default filled in, the SNR grid expanded);
- ``meta.json``: linksim, Sionna, TensorFlow, Keras, numpy and Python versions, the seed,
  the git commit when available, wall time, per-scheme facts (bit budget, codewords);
- ``results.csv``: one row per (scheme, SNR point), written after every point;
- ``examples/``: a few received images per (scheme, SNR point) for the image grid
  (file names from :func:`example_path`, the one place that names them);
- the PNG plots, drawn from ``results.csv`` (``linksim plot RUN_DIR`` redraws them).

Resuming: running the same scenario into a directory that already holds some of its
rows computes only the missing (scheme, SNR) points.  A directory that holds a
*different* scenario's results is refused, so nothing computed is overwritten.
A damaged ``results.csv`` (a row cut off, garbage lines) loses only its damaged
rows, which are computed again (the damaged file is kept aside); a merge-conflict
marker in it is an error.

Ownership: linksim marks the directories it creates (``"linksim_run_dir": 1`` in
``meta.json``, written when the directory is opened).  An existing folder that is
not marked and holds anything is refused unless ``--overwrite``; even then linksim
never replaces a ``results.csv``, ``meta.json`` or ``scenario.yaml`` that it did not
write.  A run directory whose run computed nothing (it failed before its first
point) takes the corrected scenario.

This module imports no other linksim module but the package version, so plotting
and evaluation can both use it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from linksim import __version__

__all__ = ["RunError", "RunDirectory", "RESULTS", "REFERENCE", "REFERENCE_TYPE", "MARKER", "versions", "slug",
           "snr_key", "row_snr_key", "example_path", "is_reference", "read_results", "default_run_dir", "writable_folder_problem"]

RESULTS = "results.csv"
META = "meta.json"
SCENARIO = "scenario.yaml"
#: The key of ``meta.json`` that marks a directory as a linksim run directory.
MARKER = "linksim_run_dir"
#: The files linksim writes at the top of a run directory: never replaced in a folder it does not own.
OWN_FILES = (RESULTS, META, SCENARIO)
#: Columns without which a results table cannot be resumed or plotted.
REQUIRED_COLUMNS = ("scheme", "snr_db")
#: Largest ``results.csv`` read (bytes); a real one holds a few hundred rows.
MAX_RESULTS_BYTES = 256 * 2 ** 20
_CONFLICT = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")

#: The ``scheme`` of the reference row (a task on the original test images: the ceiling
#: of every scheme's task metrics).  The one name of that row: the results table, the
#: plots' legends and the Markdown table all use it.
REFERENCE = "reference (original images)"
#: The ``scheme_type`` of the reference row.
REFERENCE_TYPE = "Reference"


class RunError(RuntimeError):
    """A run that cannot proceed (e.g. the output directory holds another scenario)."""


def versions() -> dict:
    """Versions of everything that changes results."""
    import keras
    import sionna.phy
    import tensorflow as tf

    try:
        from importlib.metadata import version

        sionna_v = version("sionna-no-rt")
    except Exception:  # pragma: no cover
        sionna_v = getattr(sionna.phy, "__version__", "unknown")
    return {"linksim": __version__, "sionna": sionna_v, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the linksim checkout, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits and underscores, lower case."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "scheme"


def snr_key(snr_db) -> str:
    """A grid point as text: ``"10.000000"``, or per hop ``"10.000000/20.000000"``."""
    if isinstance(snr_db, (list, tuple)):
        return "/".join(f"{float(v):.6f}" for v in snr_db)
    return f"{float(snr_db):.6f}"


def _explicit(row: dict) -> bool:
    flag = row.get("snr_explicit_per_hop")
    if isinstance(flag, str):  # read back from CSV by a reader that kept text
        return flag.strip().lower() == "true"
    return bool(flag) and not (isinstance(flag, float) and np.isnan(flag))


def row_snr_key(row: dict) -> str:
    """The :func:`snr_key` of the grid point a results row was computed at."""
    hop = row.get("hop_snr_db")
    if isinstance(hop, str) and hop and _explicit(row):
        return snr_key([float(v) for v in hop.split("/")])
    return snr_key(row["snr_db"])


def is_reference(df: pd.DataFrame) -> pd.Series:
    """Which rows of a results table are the reference row."""
    return df["scheme"] == REFERENCE if "scheme" in df.columns else pd.Series(False, index=df.index)


EXAMPLE_INDEX = "labels.json"


def _example_stems(run_dir) -> dict:
    """``examples/labels.json``: scheme label -> file-name stem ({} when absent or unreadable)."""
    try:
        stems = json.loads((Path(run_dir) / "examples" / EXAMPLE_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return stems if isinstance(stems, dict) else {}


def example_path(run_dir, scheme_label: str, row: dict) -> Path:
    """Where the example images of a (scheme, SNR point) are stored.

    ``row`` is a results row (or its SNR columns ``snr_db``, ``hop_snr_db``,
    ``snr_explicit_per_hop``): a swept point is named by its SNR
    (``<scheme>__snr10.npy``), an explicit per-hop point by its hop SNRs
    (``<scheme>__snr5_20.npy``).  ``<scheme>`` is :func:`slug` of the label, or,
    when another label of the run has the same slug (``A+B`` and ``A B``), the
    stem recorded for it in ``examples/labels.json`` (the slug and a hash of the
    label).  Writer and example grid both call this.
    """
    if _explicit(row):
        tag = "_".join(f"{float(v):g}" for v in str(row["hop_snr_db"]).split("/"))
    else:
        tag = f"{float(row['snr_db']):g}"
    stem = _example_stems(run_dir).get(scheme_label)
    stem = stem if isinstance(stem, str) and stem == slug(stem) else slug(scheme_label)
    return Path(run_dir) / "examples" / f"{stem}__snr{tag}.npy"


def default_run_dir(name: str, quick: bool = False, root="runs") -> Path:
    """The run directory of a scenario without ``--out``: ``runs/<name>`` (``_quick`` added).

    Raises
    ------
    RunError
        ``name`` is not a single plain file name (it is empty, absolute, holds ``/``, ``\\``
        or a NUL byte, or is ``.`` or ``..``), so the directory would lie outside ``root``.
    """
    from linksim.limits import RUN_NAME_ALLOWED, unsafe_run_name

    text = str(name)
    bad = unsafe_run_name(text)
    if not bad:
        out = Path(root) / (text + ("_quick" if quick else ""))
        bad = Path(os.path.abspath(out)).parent != Path(os.path.abspath(root))
    if bad:
        raise RunError(f"scenario name {text!r} cannot name a folder under {root}/ (it would write outside "
                       f"{root}/); allowed: {RUN_NAME_ALLOWED}; or give --out DIR")
    return out


def writable_folder_problem(path: Path) -> tuple[str, str] | None:
    """Create the folder ``path`` if missing and try a write in it.

    Output
    ------
    None when it is usable, else ``(what, reason)``: ``what`` is ``"file"`` (``path`` is a
    file), ``"below_file"`` (a part of the path is a file), ``"create"`` or ``"write"``
    (``reason``: the operating system's).  The run directory and the model store word
    their errors from it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "file", "is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "below_file", "a part of the path is a file, not a folder"
    except OSError as exc:
        return "create", str(exc.strerror or exc)
    probe = path / f".linksim-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return "write", str(exc.strerror or exc)
    return None


def _cell_is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_results(path, *, keep_damaged: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Read a ``results.csv``, leaving out damaged rows.

    A row is damaged when it is cut off (the file does not end with a line end),
    has another number of fields than the header, holds bytes that are not UTF-8,
    lacks its ``scheme`` or ``snr_db`` (except the reference row), or has text
    where the rest of its column holds numbers.

    Parameters
    ----------
    path : path
        The file.
    keep_damaged : bool
        Copy the file to ``results.damaged-<time>.csv`` beside it when a row is left out.

    Output
    ------
    (table, problems): the good rows (read exactly as ``pandas.read_csv`` reads an
    undamaged file) and one text per damaged row (``"line 7: cut off"``).

    Raises
    ------
    RunError
        The file cannot be read, is not a regular file, is larger than
        :data:`MAX_RESULTS_BYTES`, holds a merge-conflict marker, or its header lacks
        ``scheme`` or ``snr_db`` (the message names the file, the line and the columns).
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise RunError(f"{path} is not a regular file (a folder, device or pipe); delete or move it")
        if path.stat().st_size > MAX_RESULTS_BYTES:
            raise RunError(f"{path} is {path.stat().st_size:,} bytes, more than the {MAX_RESULTS_BYTES:,}-byte "
                           "limit of a results table; is it a linksim results file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise RunError(f"{path}: cannot read the results ({exc.strerror or exc})") from None
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a byte-order mark (spreadsheets add one)
    if not text.strip():
        return pd.DataFrame(), []
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(_CONFLICT):
            raise RunError(f"{path}, line {i}: a merge-conflict marker ({line[:7]}); the file holds two versions "
                           "of the results. Resolve the conflict (keep one side's rows), or delete the file to "
                           "compute every point again")
    records, ends = [], []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for rec in reader:
            records.append(rec)
            ends.append(reader.line_num)
    except csv.Error as exc:
        raise RunError(f"{path}, line {reader.line_num + 1}: not CSV ({exc}); delete the file to compute every "
                       "point again") from None
    header = records[0]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing or "\ufffd" in ",".join(header):
        raise RunError(f"{path}, line 1: the header lacks the column(s) {', '.join(missing) or '(unreadable)'} "
                       f"(a linksim results table has at least {', '.join(REQUIRED_COLUMNS)}; found: "
                       f"{', '.join(header[:12]) or 'nothing'}); is it a linksim results file?")
    problems: dict[int, str] = {}
    body = list(zip(records[1:], ends[1:]))
    if not text.endswith(("\n", "\r")) and body:
        problems[len(body) - 1] = f"line {body[-1][1]}: cut off (no line end)"
    col = {c: header.index(c) for c in header}
    for j, (rec, end) in enumerate(body):
        if j in problems:
            continue
        if not rec:  # a blank line: pandas skips it
            continue
        if len(rec) != len(header):
            problems[j] = f"line {end}: {len(rec)} field(s) instead of {len(header)}"
        elif any("\ufffd" in v for v in rec):
            problems[j] = f"line {end}: bytes that are not UTF-8 text"
        elif rec[col["scheme"]] != REFERENCE and (not rec[col["scheme"]] or not rec[col["snr_db"]] or (
                "channel_uses" in col and not rec[col["channel_uses"]])):
            problems[j] = f"line {end}: no scheme, snr_db or channel_uses"
    good = [j for j in range(len(body)) if j not in problems]
    for c, k in col.items():  # text in a column of numbers
        cells = [(j, body[j][0][k]) for j in good if body[j][0] and body[j][0][k] != ""]
        numeric = [j for j, v in cells if _cell_is_number(v)]
        if c in ("snr_db", "channel_uses") or len(numeric) * 2 > len(cells):
            for j, v in cells:
                if not _cell_is_number(v) and not (c == "snr_db" and body[j][0][col["scheme"]] == REFERENCE):
                    problems.setdefault(j, f"line {body[j][1]}: {c} is not a number ({v[:20]!r})")
                elif c in ("snr_db", "channel_uses") and _cell_is_number(v) and not np.isfinite(float(v)):
                    problems.setdefault(j, f"line {body[j][1]}: {c} is {v[:20]!r}, not a finite number")
    if not problems:
        return pd.read_csv(io.StringIO(text)), []
    lines = text.splitlines(keepends=True)
    keep_lines = set(range(ends[0]))  # the header's physical lines
    for j in range(len(body)):
        if j not in problems:
            first = ends[j] if j == 0 else body[j - 1][1]
            keep_lines.update(range(first, body[j][1]))
    clean = "".join(lines[i] for i in sorted(keep_lines) if i < len(lines))
    if not clean.endswith("\n"):
        clean += "\n"
    listed = [problems[j] for j in sorted(problems)]
    if keep_damaged:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        shutil.copyfile(path, path.with_name(f"results.damaged-{stamp}.csv"))
    return pd.read_csv(io.StringIO(clean)), listed


def _resolved_for_compare(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=True)


class RunDirectory:
    """A run directory: the scenario it holds, its rows, its meta data and examples.

    Parameters
    ----------
    path : path
        The directory (created by :meth:`open`).
    """

    def __init__(self, path):
        self.path = Path(path)

    @property
    def results_file(self) -> Path:
        return self.path / RESULTS

    def _meta(self) -> dict | None:
        """``meta.json`` as a dict, or None when absent or not a JSON object."""
        try:
            meta = json.loads((self.path / META).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def owned(self) -> bool:
        """Whether linksim made this directory: ``meta.json`` marked, or (runs of earlier versions,
        which wrote ``meta.json`` only at the end) a ``scenario.yaml`` that is a resolved scenario."""
        meta = self._meta()
        if meta is not None and meta.get(MARKER):
            return True
        if meta is not None and "versions" not in meta:  # somebody else's meta.json
            return False
        try:
            old = yaml.safe_load((self.path / SCENARIO).read_text())
        except (OSError, ValueError, yaml.YAMLError):
            return False
        return isinstance(old, dict) and {"name", "schemes", "dataset", "snr_db"} <= set(old)

    def _check_usable(self) -> None:
        out = self.path
        problem = writable_folder_problem(out)
        if problem is not None:
            what, reason = problem
            raise RunError({
                "file": f"--out {out} is a file, not a folder; give a folder (it is created if missing)",
                "below_file": f"--out {out}: a part of the path is a file, not a folder; give another --out",
                "create": f"--out {out}: cannot create the folder ({reason}); give a folder you can write to",
                "write": f"--out {out} is not writable ({reason}); give a folder you can write to"}[what])
        for name, kind in ((RESULTS, "file"), (META, "file"), (SCENARIO, "file"), ("examples", "folder")):
            entry = out / name
            if entry.is_symlink():
                raise RunError(f"{entry} is a symbolic link; linksim writes only into files and folders of the run "
                               f"directory itself (never through a link to elsewhere). Remove the link, or give "
                               f"another --out")
            if entry.exists() and (entry.is_dir() if kind == "file" else not entry.is_dir()):
                raise RunError(f"{entry} is a {'folder' if entry.is_dir() else 'file'}, where linksim keeps its "
                               f"{name} {kind}; move it away, or give another --out")

    def open(self, scenario_data: dict, scenario_yaml: str, overwrite: bool = False) -> list[dict]:
        """Create the directory; return the rows already there (resume).

        Parameters
        ----------
        scenario_data : dict
            The resolved scenario (``Scenario.data``), compared with the stored one.
        scenario_yaml : str
            Its YAML text, written to ``scenario.yaml`` in a new directory.
        overwrite : bool
            Replace another scenario's results instead of refusing.

        Output
        ------
        list of dict: the stored rows of this scenario (empty for a new directory);
        damaged rows of ``results.csv`` are left out (with a warning), so they are
        computed again.

        Raises
        ------
        RunError
            The path is a file, cannot be created or written; the directory holds a
            different scenario's results, or is a folder linksim did not create that
            holds files (and not ``overwrite``); the folder is not linksim's and holds a
            ``results.csv``, ``meta.json`` or ``scenario.yaml`` (even with ``overwrite``);
            ``results.csv`` holds a merge-conflict marker or lacks its columns.
        """
        out = self.path
        self._check_usable()
        existing = out / SCENARIO
        if not self.owned():
            theirs = [f for f in OWN_FILES if (out / f).exists()]
            if theirs:
                raise RunError(f"--out {out} holds {', '.join(theirs)} that linksim did not write (its meta.json "
                               "has no linksim mark); nothing was changed, not even with --overwrite. Give "
                               "another --out")
            others = sorted(p.name for p in out.iterdir())
            if others and not overwrite:
                raise RunError(f"--out {out} is a folder linksim did not create and it holds "
                               f"{len(others)} other file(s) ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
                               "nothing was changed. Give a new or empty folder, or --overwrite to write into it")
            existing.write_text(scenario_yaml)
            self._mark(scenario_data)
            return []
        if existing.exists() and not overwrite:
            try:
                old = yaml.safe_load(existing.read_text())
            except (OSError, ValueError, yaml.YAMLError):
                old = None
            rows = self._read_rows()
            if old is None or _resolved_for_compare(old) != _resolved_for_compare(scenario_data):
                if any(r.get("scheme") != REFERENCE for r in rows):
                    what = (f"its {SCENARIO} cannot be read as a scenario (damaged?), so whether its results are "
                            "this scenario's is unknown" if not isinstance(old, dict) else
                            f"it holds the results of a different scenario ({existing})")
                    raise RunError(f"{out}: {what}; nothing was changed. Use another --out, or --overwrite to "
                                   f"replace them.")
                # the run there computed no point (it failed early): the corrected scenario takes it
                if self.results_file.exists():
                    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
                    os.replace(self.results_file, out / f"results.replaced-{stamp}.csv")
                existing.write_text(scenario_yaml)
                self._mark(scenario_data)
                return []
            if any(r.get("scheme") != REFERENCE for r in rows) and "channel_uses" not in rows[0]:
                raise RunError(f"{self.results_file}, line 1: the header lacks the column channel_uses (a "
                               "linksim results table has scheme, snr_db, channel_uses, ...); delete the file to "
                               "compute every point again, or use another --out")
            self._mark(scenario_data)
            return rows
        if overwrite and self.results_file.exists():
            self.results_file.unlink()
        elif any(r.get("scheme") != REFERENCE for r in self._read_rows()):
            raise RunError(f"{out} holds results ({RESULTS}) but no {SCENARIO}, so which scenario they belong to "
                           "is unknown; nothing was changed. Use another --out, or --overwrite to replace them")
        existing.write_text(scenario_yaml)
        self._mark(scenario_data)
        return []

    def _read_rows(self) -> list[dict]:
        if not self.results_file.exists():
            return []
        df, problems = read_results(self.results_file, keep_damaged=True)
        if problems:
            warnings.warn(f"{self.results_file}: left out {len(problems)} damaged row(s) ("
                          f"{'; '.join(problems[:5])}{'; ...' if len(problems) > 5 else ''}); their points are "
                          "computed again (the damaged file is kept as results.damaged-<time>.csv)", stacklevel=3)
        return df.to_dict("records")

    def _mark(self, scenario_data: dict) -> None:
        """Mark the directory as linksim's (``meta.json``), keeping a finished run's meta data."""
        meta = self._meta()
        if meta is not None and meta.get(MARKER):
            return
        meta = meta if meta is not None and "versions" in meta else {}
        meta.setdefault("scenario", scenario_data.get("name"))
        meta.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.write_meta(meta)

    def write_results(self, rows: list[dict]) -> pd.DataFrame:
        """Write ``rows`` to ``results.csv`` atomically (a new file replaces the old)."""
        df = pd.DataFrame(rows)
        tmp = self.path / (RESULTS + ".tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, self.results_file)
        return df

    def write_meta(self, meta: dict) -> Path:
        """Write ``meta.json`` (with the linksim mark, :data:`MARKER`)."""
        path = self.path / META
        tmp = self.path / (META + ".tmp")
        tmp.write_text(json.dumps({MARKER: 1, **{k: v for k, v in meta.items() if k != MARKER}}, indent=2,
                                  default=str))
        os.replace(tmp, path)
        return path

    def write_original_examples(self, images) -> None:
        """Store the original images of the example grid (``examples/original.npy``)."""
        (self.path / "examples").mkdir(exist_ok=True)
        np.save(self.path / "examples" / "original.npy", images)

    def write_examples(self, scheme_label: str, row: dict, images) -> Path:
        """Store the received example images of one (scheme, SNR point).

        Labels whose :func:`slug` is the same (``A+B``, ``A B``) get distinct files: the
        second gets the slug and a hash of its label, recorded in ``examples/labels.json``.
        """
        (self.path / "examples").mkdir(exist_ok=True)
        stems = _example_stems(self.path)
        if scheme_label not in stems:
            stem = slug(scheme_label)
            if stem in stems.values():
                stem = f"{stem}_{hashlib.sha1(scheme_label.encode()).hexdigest()[:8]}"
            stems[scheme_label] = stem
            (self.path / "examples" / EXAMPLE_INDEX).write_text(json.dumps(stems, indent=1, sort_keys=True))
        path = example_path(self.path, scheme_label, row)
        np.save(path, images)
        return path


def new_meta(scenario, resumed_points: int) -> dict:
    """The provenance of a run at its start: versions, commit, command, seed, time."""
    return {"scenario": scenario.name, "source": scenario.source, "seed": scenario.seed,
            "quick": bool(scenario.data.get("quick_mode", False)), "versions": versions(),
            "git_commit": git_commit(), "command": " ".join(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed_points": resumed_points, "schemes": []}


def finish_meta(meta: dict, wall_time_s: float) -> dict:
    """Add the end time and the wall time to ``meta``."""
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta["wall_time_s"] = round(wall_time_s, 2)
    return meta
