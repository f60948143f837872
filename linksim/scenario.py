"""Scenario files: load YAML, validate against the schema, explain errors.

A scenario is the single input of a linksim run: the data set, the SNR grid, the
rate (channel uses per image), the schemes, the metrics and the plots.  The
full field reference is ``docs/scenarios.md``; the machine-readable schema is
``linksim/scenario_schema.json``.

Validation happens in three passes, each raising :class:`ScenarioError` with the
file, the line (where the YAML parser knows it), the field and the allowed values:

1. YAML syntax;
2. structure and types against the JSON schema;
3. names looked up in the registries (schemes, codecs, channel codes, relays,
   data sets, metrics, tasks, plots, ...) and checks that need the values together
   (e.g. a data-set path that must exist).

The schema checks structure and types only; every allowed *name* comes from the
registries (:data:`linksim.registry.ALL`), so a component a plug-in registers is
accepted.  The scenario's ``plugins:`` files are imported between passes 2 and 3.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from linksim import registry

__all__ = ["Scenario", "ScenarioError", "load_scenario", "validate_scenario_dict", "option_plot"]


class ScenarioError(ValueError):
    """An invalid scenario file.

    The message reads ``FILE:LINE: field 'a.b[2].c': what is wrong (allowed: ...)``.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = file or "<scenario>"
        if line is not None:
            where += f":{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


def _schema() -> dict:
    with resources.files("linksim").joinpath("scenario_schema.json").open("r") as fh:
        return json.load(fh)


# --------------------------------------------------------------------------- YAML with line numbers

def _line_map(text: str) -> dict[tuple, int]:
    """Map each path (tuple of keys / indices) of the YAML document to its 1-based line."""
    lines: dict[tuple, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(n, path):
        if n is None:
            return
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
                lines[path + (key,)] = k.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, path + (i,))

    walk(node, ())
    return lines


def _path_str(path: Iterable) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@dataclass
class Scenario:
    """A validated scenario with every default filled in.

    Attributes
    ----------
    data : dict
        The resolved scenario (what ``scenario.yaml`` in a run directory holds).
    source : str
        The file it came from.
    """

    data: dict
    source: str = "<scenario>"
    _lines: dict = field(default_factory=dict, repr=False)

    # convenience accessors --------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def seed(self) -> int:
        return int(self.data["seed"])

    @property
    def snr_db(self) -> list[float]:
        return list(self.data["snr_db"])

    @property
    def schemes(self) -> list[dict]:
        return self.data["schemes"]

    def line_of(self, path: tuple) -> int | None:
        """The line in the source file of a field, or of its nearest parent."""
        path = tuple(path)
        while path and path not in self._lines:
            path = path[:-1]
        return self._lines.get(path)

    def error(self, path: tuple, message: str) -> ScenarioError:
        """A :class:`ScenarioError` pointing at field ``path`` of this scenario."""
        return ScenarioError(message, file=self.source, line=self.line_of(path),
                             field=_path_str(path) or None)

    def quick(self) -> "Scenario":
        """The same scenario at smoke size: the ``quick`` overrides applied."""
        data = copy.deepcopy(self.data)
        q = data.get("quick", {})
        data["dataset"]["test_size"] = min(q.get("test_size", 32), data["dataset"]["test_size"])
        if "train_size" in q and data["dataset"].get("train_size"):
            data["dataset"]["train_size"] = min(q["train_size"], data["dataset"]["train_size"])
        if "snr_db" in q:
            data["snr_db"] = _expand_snr(q["snr_db"])
        else:
            grid = data["snr_db"]
            picks = []
            for v in (grid[0], grid[len(grid) // 2], grid[-1]):
                if v not in picks:
                    picks.append(v)
            data["snr_db"] = picks
        data["quick_mode"] = True
        return Scenario(data, self.source, self._lines)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False)


def _expand_snr(spec) -> list[float]:
    if isinstance(spec, dict):
        start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        return [round(start + i * step, 6) for i in range(n)]
    return [[float(u) for u in v] if isinstance(v, list) else float(v) for v in spec]


# --------------------------------------------------------------------------- validation

def _schema_error_message(err: jsonschema.ValidationError) -> str:
    v = err.validator
    if v == "enum":
        return f"{err.instance!r} is not allowed (allowed: {', '.join(map(str, err.validator_value))})"
    if v == "required":
        missing = [r for r in err.validator_value if r not in (err.instance or {})]
        return f"missing required field(s): {', '.join(missing)}"
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"unknown field(s) {', '.join(extra)} (allowed: {', '.join(allowed)})"
    if v == "type":
        t = err.validator_value
        t = " or ".join(t) if isinstance(t, list) else t
        return f"must be of type {t} (got {type(err.instance).__name__} {err.instance!r})"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"must be {op} {err.validator_value} (got {err.instance!r})"
    if v == "minItems":
        return f"needs at least {err.validator_value} item(s)"
    if v == "oneOf" or v == "anyOf":
        opts = [s.get("description", s.get("type", "?")) for s in err.validator_value]
        return f"{err.instance!r} matches none of the allowed forms: {'; '.join(map(str, opts))}"
    return err.message


def _unknown(reg: registry.Registry, name) -> str:
    return str(registry.UnknownNameError(reg.kind, name, reg.names()))


def _check_registry_names(data: dict, err) -> None:
    """Pass 3a: every `type:` / name must be registered (the allowed values come from the registries)."""
    ds = data["dataset"]
    if ds["name"] not in registry.DATASETS:
        raise err(("dataset", "name"), _unknown(registry.DATASETS, ds["name"]))
    try:
        registry.DATASETS.check_options(ds["name"], ds.get("params", {}))
    except ValueError as exc:
        raise err(("dataset", "params"), str(exc)) from None
    ch = data["channel"]
    if ch["type"] not in registry.CHANNELS:
        raise err(("channel", "type"), _unknown(registry.CHANNELS, ch["type"]))
    relays = ch.get("relay")
    for j, name in enumerate(relays if isinstance(relays, list) else [relays] if relays is not None else []):
        if name not in registry.RELAYS:
            raise err(("channel", "relay") + ((j,) if isinstance(relays, list) else ()),
                      _unknown(registry.RELAYS, name))
    hop = ch.get("hop")
    for j, h in enumerate(hop if isinstance(hop, list) else [hop]):
        if isinstance(h, dict) and h.get("type") not in registry.CHANNELS:
            raise err(("channel", "hop") + ((j,) if isinstance(hop, list) else ()) + ("type",),
                      _unknown(registry.CHANNELS, h.get("type")))
    for i, s in enumerate(data["schemes"]):
        if s["type"] not in registry.SCHEMES:
            raise err(("schemes", i, "type"), _unknown(registry.SCHEMES, s["type"]))
        for key, reg in (("codec", registry.CODECS), ("channel_code", registry.CHANNEL_CODES),
                         ("modulation", registry.MODULATIONS)):
            sub = s.get(key)
            if isinstance(sub, dict) and sub.get("type") not in reg:
                raise err(("schemes", i, key, "type"), _unknown(reg, sub.get("type")))
    for i, m in enumerate(data["metrics"]):
        if m not in registry.METRICS:
            raise err(("metrics", i), _unknown(registry.METRICS, m))
    _check_tasks(data, err)
    for i, p in enumerate(data["plots"]):
        if p not in registry.PLOTS and option_plot(p, data) is None:
            raise err(("plots", i), _unknown(registry.PLOTS, p) +
                      " Or <metric>_vs_<scheme option> (e.g. accuracy_vs_tau) for an option the schemes set.")


def option_plot(name: str, data: dict) -> tuple[str, str] | None:
    """``(metric, option)`` of a ``<metric>_vs_<scheme option>`` plot name, or None.

    ``metric`` is a registered metric (its results column is drawn) and ``option`` a
    field that at least one of the scenario's schemes sets (e.g. ``accuracy_vs_tau``,
    ``psnr_vs_snr_train_db``).
    """
    metric, sep, option = name.partition("_vs_")
    if not sep or not option or metric not in registry.METRICS:
        return None
    if any(option in sch for sch in data.get("schemes", [])):
        return metric, option
    return None


def _check_tasks(data: dict, err) -> None:
    """The tasks the task metrics name are registered; every ``task:`` field is some task's option."""
    from linksim.metrics import get_metric

    for i, m in enumerate(data["metrics"]):
        metric = get_metric(m)
        if metric.kind == "task" and metric.task not in registry.TASKS:
            raise err(("metrics", i), f"metric '{m}' needs task '{metric.task}': " + _unknown(registry.TASKS, metric.task))
    taken = set()
    for name in registry.TASKS.names():
        opts = registry.TASKS.options(name)
        if opts is None:
            return
        taken.update(opts)
    for key in data.get("task", {}) or {}:
        if key not in taken:
            raise err(("task", key), f"no registered task takes the option '{key}' "
                                     f"(allowed: {', '.join(sorted(taken)) or 'none'})")


def _check_values(data: dict, err) -> None:
    """Pass 3b: checks that need several values or the file system."""
    spec = data["snr_db"]
    if isinstance(spec, dict):
        if spec["step"] <= 0:
            raise err(("snr_db", "step"), f"must be > 0 (got {spec['step']})")
        if spec["stop"] < spec["start"]:
            raise err(("snr_db", "stop"), f"must be >= start ({spec['start']}) (got {spec['stop']})")
    ch = data["channel"]
    hops = ch.get("hops", 2 if ch["type"] == "multihop" else 1)
    if "hop_snr_db" in ch:
        if ch["type"] != "multihop":
            raise err(("channel", "hop_snr_db"), "only a multihop channel has per-hop SNRs")
        if len(ch["hop_snr_db"]) != hops:
            raise err(("channel", "hop_snr_db"), f"needs one entry per hop ({hops}), got {len(ch['hop_snr_db'])}")
        if "sweep" not in ch["hop_snr_db"]:
            raise err(("channel", "hop_snr_db"), "needs at least one 'sweep' entry (the hop(s) the snr_db grid sweeps)")
    if isinstance(spec, list):
        for i, v in enumerate(spec):
            if isinstance(v, list) and len(v) != hops:
                raise err(("snr_db", i), f"a per-hop list needs one Es/N0 per hop ({hops}), got {len(v)}")
            if isinstance(v, list) and "hop_snr_db" in ch:
                raise err(("snr_db", i), "give per-hop lists in snr_db or channel.hop_snr_db, not both")
    rate = data["rate"]
    if ("channel_uses" in rate) == ("bandwidth_ratio" in rate):
        raise err(("rate",), "give exactly one of channel_uses, bandwidth_ratio")
    ds = data["dataset"]
    path = ds.get("params", {}).get("path")
    if path is not None and not Path(os.path.expanduser(str(path))).exists():
        raise err(("dataset", "params", "path"), f"path does not exist: {path}")
    labels = [s.get("label") for s in data["schemes"]]
    seen = set()
    for i, lab in enumerate(labels):
        if lab in seen:
            raise err(("schemes", i, "label"), f"duplicate scheme label {lab!r}; labels must be unique")
        seen.add(lab)


def _fill_defaults(data: dict, schema: dict) -> dict:
    """Apply the schema's top-level and dataset defaults; give each scheme a label."""
    data = copy.deepcopy(data)
    props = schema["properties"]
    for key, sub in props.items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
    for key, sub in props["dataset"]["properties"].items():
        if key not in data["dataset"] and "default" in sub:
            data["dataset"][key] = copy.deepcopy(sub["default"])
    for key, sub in props["evaluation"]["properties"].items():
        data["evaluation"].setdefault(key, sub.get("default"))
    for s in data["schemes"]:
        if not s.get("label"):
            s["label"] = _default_label(s)
    return data


def _default_label(s: dict) -> str:
    parts = [s["type"]]
    for key in ("codec", "channel_code", "modulation"):
        sub = s.get(key)
        if isinstance(sub, dict):
            parts.append(str(sub.get("type")))
    return "+".join(parts)


def validate_scenario_dict(raw: Any, source: str = "<scenario>", lines: dict | None = None) -> Scenario:
    """Validate an already-parsed scenario and fill its defaults.

    Parameters
    ----------
    raw : dict
        The parsed YAML document.
    source : str
        File name used in error messages.
    lines : dict, optional
        Path -> line map from :func:`_line_map`.

    Output
    ------
    Scenario

    Raises
    ------
    ScenarioError
        Naming file, line, field and allowed values.
    """
    lines = lines or {}

    def err(path, msg):
        p = tuple(path)
        q = p
        while q and q not in lines:
            q = q[:-1]
        return ScenarioError(msg, file=source, line=lines.get(q), field=_path_str(p) or None)

    if not isinstance(raw, dict):
        raise ScenarioError("the document must be a mapping of fields (name, dataset, snr_db, ...)",
                            file=source, line=1)
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # the deepest error is the most specific; prefer it over a oneOf summary
        e = max(errors, key=lambda e: len(e.absolute_path))
        if e.validator in ("oneOf", "anyOf") and e.context:
            e = max(e.context, key=lambda c: len(c.absolute_path))
        raise err(e.absolute_path, _schema_error_message(e))
    _load_scenario_plugins(raw.get("plugins") or [], source, err)
    data = _fill_defaults(raw, schema)
    _check_values(data, err)
    _check_registry_names(data, err)
    data["snr_db"] = _expand_snr(data["snr_db"])
    data["snr_db_spec"] = raw["snr_db"]
    return Scenario(data, source, lines)


def _load_scenario_plugins(paths: list, source: str, err) -> None:
    """Import the scenario's ``plugins:`` files (relative to the scenario file's folder)."""
    base = Path(source).resolve().parent if source and not source.startswith("<") else None
    for i, p in enumerate(paths):
        try:
            registry.load_plugin(p, base)
        except registry.PluginError as exc:
            raise err(("plugins", i), str(exc)) from None


def load_scenario(path: str | os.PathLike) -> Scenario:
    """Read, validate and resolve a scenario file.

    Raises
    ------
    ScenarioError
        If the file is missing, is not valid YAML, or does not follow the schema.
    """
    path = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ScenarioError("file not found", file=path) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read file: {exc.strerror}", file=path) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"YAML syntax error: {problem}", file=path,
                            line=(mark.line + 1) if mark else None) from None
    return validate_scenario_dict(raw, source=path, lines=_line_map(text))
