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
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from linksim import catalog, channel_sweep, limits, registry

__all__ = ["Scenario", "ScenarioError", "load_scenario", "validate_scenario_dict", "option_plot"]


class ScenarioError(ValueError):
    """An invalid scenario file (a user error: exit status 2, :mod:`linksim.errors`).

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

    user_error = True

    def __reduce__(self):  # keyword-only fields: pickled (e.g. from a worker process) by hand
        return (_scenario_error, (self.reason, self.file, self.line, self.field))


def _scenario_error(message, file, line, field) -> ScenarioError:
    return ScenarioError(message, file=file, line=line, field=field)


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
        data["channel"] = quick_channel(data["channel"], q)
        data["quick_mode"] = True
        return Scenario(data, self.source, self._lines)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=False)


def quick_channel(channel: dict, quick: dict) -> dict:
    """The ``channel`` mapping with the ``quick`` block's ``hops``, ``relay_params`` (a multihop channel) and
    ``channel_params`` (the options of a one-hop channel) applied (a smaller sweep)."""
    if not any(k in quick for k in ("hops", "relay_params", "channel_params")):
        return channel
    ch = dict(channel)
    if "hops" in quick:
        ch["hops"] = copy.deepcopy(quick["hops"])
    if "relay_params" in quick:
        ch["relay_params"] = {**(ch.get("relay_params") or {}), **copy.deepcopy(quick["relay_params"])}
    if "channel_params" in quick:
        ch.update(copy.deepcopy(quick["channel_params"] or {}))
    return ch


def _range_points(spec: dict) -> int:
    """How many points ``{start, stop, step}`` holds (0 when stop < start)."""
    start, stop, step = float(spec["start"]), float(spec["stop"]), float(spec["step"])
    if stop < start:
        return 0
    return int(math.floor((stop - start) / step + 1e-9)) + 1


def _expand_snr(spec) -> list[float]:
    if isinstance(spec, dict):
        start, step = float(spec["start"]), float(spec["step"])
        n = _range_points(spec)
        if n > limits.MAX_SNR_POINTS:   # validation refuses these; never build a huge list
            raise ValueError(f"{n} SNR points exceed the limit of {limits.MAX_SNR_POINTS}")
        return [round(start + i * step, 6) for i in range(n)]
    return [[float(u) for u in v] if isinstance(v, list) else float(v) for v in spec]


class ScenarioLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-3`` and ``1E5`` as numbers.

    PyYAML follows YAML 1.1, whose floats need a dot (``1.0e-3``), so a learning rate
    written ``1e-3`` would be the text "1e-3"; YAML 1.2 and every other tool read it
    as a number.
    """


ScenarioLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+0123456789":
    ScenarioLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")))


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
        extra = sorted(map(str, set(err.instance) - set(allowed)))
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


def _title(reg: registry.Registry) -> str:
    return next(t for t, r in registry.ALL.items() if r is reg)


def _names(reg: registry.Registry) -> list[str]:
    """Built-in names (from :mod:`linksim.catalog`, no TensorFlow) and those registered so far (plug-ins)."""
    return sorted(set(catalog.CATALOG[_title(reg)]) | set(reg.loaded_names()))


def _known(reg: registry.Registry, name) -> bool:
    return isinstance(name, str) and (name in catalog.CATALOG[_title(reg)] or name in reg.loaded_names())


def _builtin(reg: registry.Registry, name) -> bool:
    """A built-in component the catalogue checks (a plug-in may not replace a built-in name)."""
    return isinstance(name, str) and name in catalog.CATALOG[_title(reg)]


def _unknown(reg: registry.Registry, name) -> str:
    return str(registry.UnknownNameError(reg.kind, name, _names(reg)))


def _raise_first(problems, err, prefix: tuple) -> None:
    for sub, msg in problems:
        raise err(prefix + tuple(sub), msg)


def _plugin_options(reg: registry.Registry, name: str, params, err, path: tuple) -> None:
    """Unknown options of a plug-in's component (its registry knows them; this imports the built-ins)."""
    try:
        reg.check_options(name, params)
    except ValueError as exc:
        raise err(path, str(exc)) from None


def _check_registry_names(data: dict, err, channel_uses: list | None = None) -> None:
    """Pass 3a: every `type:` / name is registered, and every option of every component is valid.

    Built-in components are checked against :mod:`linksim.catalog` (no TensorFlow);
    a plug-in's against its registry.
    """
    ds = data["dataset"]
    if not _known(registry.DATASETS, ds["name"]):
        raise err(("dataset", "name"), _unknown(registry.DATASETS, ds["name"]))
    ch = data["channel"]
    if not _known(registry.CHANNELS, ch["type"]):
        raise err(("channel", "type"), _unknown(registry.CHANNELS, ch["type"]))
    relays = ch.get("relay")
    for j, name in enumerate(relays if isinstance(relays, list) else [relays] if relays is not None else []):
        if not _known(registry.RELAYS, name):
            raise err(("channel", "relay") + ((j,) if isinstance(relays, list) else ()),
                      _unknown(registry.RELAYS, name))
    hop = ch.get("hop")
    for j, h in enumerate(hop if isinstance(hop, list) else [hop]):
        if isinstance(h, dict) and not _known(registry.CHANNELS, h.get("type")):
            raise err(("channel", "hop") + ((j,) if isinstance(hop, list) else ()) + ("type",),
                      _unknown(registry.CHANNELS, h.get("type")))
    for i, s in enumerate(data["schemes"]):
        if not _known(registry.SCHEMES, s["type"]):
            raise err(("schemes", i, "type"), _unknown(registry.SCHEMES, s["type"]))
        for key, reg in (("codec", registry.CODECS), ("channel_code", registry.CHANNEL_CODES),
                         ("modulation", registry.MODULATIONS), ("architecture", registry.ARCHITECTURES)):
            sub = s.get(key)
            if isinstance(sub, dict) and not _known(reg, sub.get("type")):
                raise err(("schemes", i, key, "type"), _unknown(reg, sub.get("type")))
        for j, st in enumerate(s.get("stages") or []):
            for m, loss in enumerate(st.get("losses") or [] if isinstance(st, dict) else []):
                if isinstance(loss, dict) and "type" in loss and not _known(registry.LOSSES, loss["type"]):
                    raise err(("schemes", i, "stages", j, "losses", m, "type"),
                              _unknown(registry.LOSSES, loss["type"]))
    if not data["metrics"]:
        raise err(("metrics",), f"lists no metric; leave metrics out for the defaults, or name at least one "
                                f"(registered: {', '.join(_names(registry.METRICS))})")
    for i, m in enumerate(data["metrics"]):
        if not _known(registry.METRICS, m):
            raise err(("metrics", i), _unknown(registry.METRICS, m))
        if m in data["metrics"][:i]:
            raise err(("metrics", i), f"metric {m!r} is listed twice (items {data['metrics'].index(m)} and {i})")
    _check_tasks(data, err)
    for i, p in enumerate(data["plots"]):
        if not _known(registry.PLOTS, p) and option_plot(p, data) is None:
            raise err(("plots", i), _unknown(registry.PLOTS, p) +
                      " Or <metric>_vs_<scheme option> (e.g. accuracy_vs_tau) for an option the schemes set.")
        metric = p.split("_vs_")[0] if "_vs_" in p else None
        if metric and _known(registry.METRICS, metric) and metric not in data["metrics"]:
            raise err(("plots", i), f"plot {p!r} draws the metric {metric!r}, which metrics does not list "
                                    f"(metrics: {', '.join(data['metrics'])}); add it to metrics, or drop the plot")
    _check_options(data, err, channel_uses)


def _check_dataset_sizes(data: dict, err, counts: dict) -> None:
    """``test_size`` / ``train_size`` within the data set's images (``counts``, per split where known),
    and the images within the memory."""
    ds = data["dataset"]
    params = ds.get("params") or {}
    for split, key in (("test", "test_size"), ("train", "train_size")):
        want = ds.get(key)
        if want is not None and split in counts and want > counts[split]:
            raise err(("dataset", key), f"asks for {want:,} {split} images, but data set '{ds['name']}' has only "
                                        f"{counts[split]:,}; lower dataset.{key} to at most {counts[split]:,}")
    shape = catalog.dataset_image_shape(ds["name"], params) if _plain_size_params(params) else None
    have = limits.available_memory_bytes()
    if shape is None or have is None:
        return
    images = ds["test_size"] + (ds.get("train_size") if ds.get("train_size") is not None else counts.get("train", 0))
    need = images * shape[0] * shape[1] * shape[2] * 5  # uint8 as loaded + float32 in [0, 1]
    if need > have:
        raise err(("dataset",), f"{images:,} images of {shape[0]}x{shape[1]}x{shape[2]} need at least "
                                f"{need / 2**30:.1f} GiB of memory; the machine has {have / 2**30:.1f} GiB available (lower "
                                f"test_size / train_size or params.image_size)")


def _check_options(data: dict, err, channel_uses: list | None) -> None:
    """Pass 3b: every option of every component (once every name is known to be registered)."""
    ds = data["dataset"]
    params = ds.get("params", {})
    if _builtin(registry.DATASETS, ds["name"]):
        _raise_first(catalog.check_dataset_options(ds["name"], params), err, ("dataset", "params"))
        dataset, problem = catalog.build_dataset(ds["name"], params)
        if problem is not None:
            raise err(("dataset", "params"), problem)
        _check_dataset_sizes(data, err, catalog.dataset_counts(dataset))
    else:
        _plugin_options(registry.DATASETS, ds["name"], params, err, ("dataset", "params"))
    ch = data["channel"]
    q = data.get("quick") or {}
    builtin = _builtin(registry.CHANNELS, ch["type"])
    if channel_sweep.swept_channel_options(ch):  # a one-hop channel whose options are lists
        _check_channel_option_sweep(ch, err, lambda sub: ("channel",) + tuple(sub), builtin)
    elif builtin:
        _raise_first(catalog.check_channel(ch), err, ("channel",))
    else:
        _plugin_options(registry.CHANNELS, ch["type"],
                        {k: v for k, v in ch.items() if k not in ("type", "hop_snr_db")}, err, ("channel",))
    _check_quick_channel_params(ch, q, err, builtin)
    if builtin and ("hops" in q or "relay_params" in q):
        if ch["type"] != "multihop":
            raise err(("quick", "hops" if "hops" in q else "relay_params"),
                      "quick.hops and quick.relay_params apply to a multihop channel")
        _raise_first(catalog.check_channel(quick_channel(ch, q)), err, ("quick",))
    for i, s in enumerate(data["schemes"]):
        if _builtin(registry.SCHEMES, s["type"]):
            _raise_first(catalog.check_scheme(s["type"], {k: v for k, v in s.items() if k != "type"},
                                              channel_uses), err, ("schemes", i))
    _raise_first(catalog.check_task(data.get("task") or {}), err, ("task",))
    _raise_first(_fading_problems(data, channel_uses or []), err, ())
    q = data.get("quick") or {}
    if quick_channel(data["channel"], q) is not data["channel"]:   # the smoke-size channel: checked too
        quick = {**data, "channel": quick_channel(data["channel"], q)}
        _raise_first(((("quick",) + path, msg) for path, msg in _fading_problems(quick, channel_uses or [])),
                     err, ())


def _fading_specs(data: dict):
    """``(path, spec, scheme index or None)`` of every fading channel mapping: the scenario's channel (each
    value of a swept option), its hops, and the JSCC schemes' ``train_channel`` mappings."""
    def hops_of(path, ch, i):
        if not isinstance(ch, dict):
            return
        if ch.get("type") == "rayleigh":
            yield path, ch, i
        hop = ch.get("hop")
        if ch.get("type") == "multihop" and hop is not None:
            for j, h in enumerate(hop if isinstance(hop, list) else [hop]):
                if isinstance(h, dict) and h.get("type") == "rayleigh":
                    yield path + ("hop",) + ((j,) if isinstance(hop, list) else ()), h, i
    ch = data["channel"]
    variants = channel_sweep.channel_variants(ch) if channel_sweep.is_sweep(ch) else []
    for spec in [v.spec for v in variants] or [ch]:
        yield from hops_of(("channel",), spec, None)
    for i, s in enumerate(data["schemes"]):
        if isinstance(s.get("train_channel"), dict):
            yield from hops_of(("schemes", i, "train_channel"), s["train_channel"], i)


def _measured_af(ch: dict) -> bool:
    """Whether a multihop mapping's AF relays use ``gain: measured``."""
    params = ch.get("relay_params") or {}
    if "af" in params and isinstance(params["af"], dict):
        params = params["af"]
    relay = ch.get("relay", "af")
    return params.get("gain") == "measured" and "af" in (relay if isinstance(relay, list) else [relay])


def _transmitted_symbols(scheme: dict, k: int) -> int:
    """Symbols an image's transmission has at ``k`` channel uses (a separation scheme's codewords may
    leave some idle)."""
    if scheme.get("type") not in ("separation", "sscc"):
        return k
    n = catalog.code_length(scheme.get("channel_code"))
    m = (scheme.get("modulation") or {}).get("num_bits_per_symbol", 4)
    if n is None or not isinstance(m, int) or m < 1:
        return k
    return -(-((k * m) // n) * n // m)


def _fading_problems(data: dict, channel_uses: list):
    """A coherence that does not divide a transmission; schemes a fading channel does not serve."""
    seen = set()
    for path, spec, i in _fading_specs(data):
        coh = spec.get("coherence", "image")
        csi = spec.get("csi", "perfect")
        schemes = list(enumerate(data["schemes"])) if i is None else [(i, data["schemes"][i])]
        if isinstance(coh, int) and not isinstance(coh, bool) and coh >= 1:
            for k in channel_uses:
                for _, s in schemes:
                    n_sym = _transmitted_symbols(s, k)
                    if n_sym % coh and (path, n_sym) not in seen:
                        seen.add((path, n_sym))
                        yield path + ("coherence",), (
                            f"coherence {coh} does not divide the transmission of {n_sym} symbols per image "
                            f"({s.get('label') or s['type']} at {k} channel uses); use a divisor of {n_sym}, "
                            f"image or symbol")
        if "hop" in path and csi == "none":
            yield path + ("csi",), ("csi: none on a hop of a multihop channel is not supported: the relays and the "
                                    "destination would each need their own blind estimate of a product of "
                                    "fading gains; use csi: perfect or pilots on every hop (for one hop without "
                                    "CSI: channel: {type: rayleigh, csi: none})")
        if "hop" in path and coh != "image" and _measured_af(data["channel"] if i is None else
                                                             data["schemes"][i]["train_channel"]):
            yield path + ("coherence",), ("an AF relay with gain: measured scales a whole image by one measured "
                                          "gain, which the chain's per-symbol noise model of a fading coefficient "
                                          "shorter than the image does not describe; use coherence: image or "
                                          "gain: fixed (the instantaneous gain the relay knows)")
        if i is not None:
            continue
        for j, s in schemes:
            code = (s.get("channel_code") or {}).get("type")
            if s.get("type") in ("separation", "sscc") and code == "ideal":
                yield ("schemes", j, "channel_code"), (
                    "the ideal code's bound (capacity at the SNR) assumes AWGN; over a fading channel its rate "
                    "needs an outage policy linksim does not model: use a practical code (ldpc5g, ldpc_80211n, none)")
            short = coh == "symbol" or (isinstance(coh, int) and not isinstance(coh, bool)
                                        and any(coh < k for k in channel_uses))
            if s.get("type") in ("uncoded", "linear") and csi != "none" and short:
                yield path + ("coherence",), (
                    f"the analog references ({s['type']}) take one noise variance per image; a fading "
                    f"coefficient per {'symbol' if coh in ('symbol', 1) else f'{coh} symbols'} with known gains "
                    f"gives one per symbol: use coherence: image with them")


def _sweep_index(values: list, value) -> int:
    """Where ``value`` is in the sweep list ``values`` (the same type: 1 is not true, 1.0 is not 1)."""
    return next(j for j, x in enumerate(values) if type(x) is type(value) and x == value)


def _check_channel_option_sweep(spec: dict, err, where, builtin: bool) -> None:
    """A one-hop channel whose options are lists (:func:`linksim.channel_sweep.swept_channel_options`).

    Each value listed once, the number of chains within the grid limit, then every chain
    (variant) checked as a channel of its own (a built-in's options against the catalogue,
    a plug-in's option names against its registry). ``where(sub)`` is the scenario path of
    ``sub``, a path inside ``spec``; a problem of a swept option's value names the item
    (``channel.csi[2]``).
    """
    opts = channel_sweep.swept_channel_options(spec)
    for opt in opts:
        seen: dict = {}
        for j, v in enumerate(spec[opt]):
            key = (type(v) is bool, channel_sweep._norm(v))  # 1 and 1.0 are the same chain in results.csv
            if key in seen:
                raise err(where((opt, j)), f"lists {v!r} twice (items {seen[key]} and {j}); each chain is run once")
            seen[key] = j
    n_chains = channel_sweep.chain_count(spec)
    if n_chains > limits.MAX_GRID_POINTS:
        raise err(where((opts[0],)), f"the sweep makes {n_chains:,} chains, more than the grid limit of "
                                     f"{limits.MAX_GRID_POINTS:,}")
    if not builtin:
        _plugin_channel_options(spec, err, where)
        return
    if any(c == "hops" or c.startswith("relay_") for c in channel_sweep.sweep_axes(spec)):
        for sub, msg in catalog.check_channel(spec):  # only a multihop channel sweeps its hops or relay options
            raise err(where(tuple(sub)), msg)
    variants = channel_sweep.channel_variants(spec)
    for variant in variants:
        for sub, msg in catalog.check_channel(variant.spec):
            sub = tuple(sub)
            if sub and sub[0] in opts:
                if _value_problem(spec[sub[0]], variant.spec, sub, msg):  # the item of the list this chain took
                    sub = (sub[0], _sweep_index(spec[sub[0]], variant.spec[sub[0]])) + sub[1:]
            elif any((sub, msg) not in [(tuple(s), m) for s, m in catalog.check_channel(v.spec)] for v in variants):
                msg = f"{msg} (in the chain {variant.tag})"  # e.g. a check of several options together
            raise err(where(sub), msg)


def _value_problem(values: list, chain: dict, sub: tuple, msg: str) -> bool:
    """Whether the problem ``(sub, msg)`` of ``chain`` comes from its value of the swept option ``sub[0]``
    (another listed value does not have it), not from the option itself (e.g. an unknown option)."""
    opt = sub[0]
    for v in values:
        if not (type(v) is type(chain[opt]) and v == chain[opt]):
            if (sub, msg) not in [(tuple(s), m) for s, m in catalog.check_channel({**chain, opt: v})]:
                return True
    return False


def _check_quick_channel_params(ch: dict, q: dict, err, builtin: bool) -> None:
    """``quick.channel_params``: options replacing a one-hop channel's at smoke size (e.g. ``{csi: [perfect]}``),
    checked like the channel; a problem of a replaced option names ``quick.channel_params.<option>``."""
    params = q.get("channel_params")
    if params is None:
        return
    if ch["type"] == "multihop":
        raise err(("quick", "channel_params"), "quick.channel_params replaces options of a one-hop channel; "
                                               "for a multihop channel use quick.hops and quick.relay_params")
    for key in params:
        if key in channel_sweep.NOT_CHANNEL_OPTIONS:
            raise err(("quick", "channel_params", key),
                      f"{key} cannot be replaced at smoke size: quick.channel_params replaces options of the "
                      f"'{ch['type']}' channel (e.g. {{csi: [perfect]}})")
    qch = quick_channel(ch, {"channel_params": params})

    def where(sub):
        return (("quick", "channel_params") if sub and sub[0] in params else ("channel",)) + tuple(sub)

    if channel_sweep.swept_channel_options(qch):
        _check_channel_option_sweep(qch, err, where, builtin)
    elif builtin:
        for sub, msg in catalog.check_channel(qch):
            raise err(where(tuple(sub)), msg)
    else:
        _plugin_channel_options(qch, err, where)


def _plugin_channel_options(spec: dict, err, where) -> None:
    """A plug-in channel's option names (its registry knows them; the values are its constructor's to check),
    the error at the first unknown option (``where(sub)``: its scenario path)."""
    params = {k: v for k, v in spec.items() if k not in ("type", "hop_snr_db")}
    try:
        registry.CHANNELS.check_options(spec["type"], params)
    except ValueError as exc:
        allowed = registry.CHANNELS.options(spec["type"]) or []
        bad = next((k for k in params if k not in allowed), None)
        raise err(where((bad,) if bad is not None else ()), str(exc)) from None


def option_plot(name: str, data: dict) -> tuple[str, str] | None:
    """``(metric, option)`` of a ``<metric>_vs_<scheme option>`` plot name, or None.

    ``metric`` is a registered metric (its results column is drawn) and ``option`` a
    field that at least one of the scenario's schemes sets (e.g. ``accuracy_vs_tau``,
    ``psnr_vs_snr_train_db``).
    """
    metric, sep, option = name.partition("_vs_")
    if not sep or not option or not _known(registry.METRICS, metric):
        return None
    if any(option in sch for sch in data.get("schemes", [])):
        return metric, option
    return None


def _metric_task(name: str) -> str | None:
    """The task a metric needs (None for other metrics), without importing TensorFlow for built-ins."""
    if name in catalog.CATALOG["metrics"]:
        return catalog.METRIC_TASKS.get(name)
    metric = registry.METRICS.get(name)
    return metric.task if getattr(metric, "kind", None) == "task" else None


def _check_tasks(data: dict, err) -> None:
    """The tasks the task metrics name are registered; every ``task:`` field is some task's option."""
    for i, m in enumerate(data["metrics"]):
        task = _metric_task(m)
        if task is not None and not _known(registry.TASKS, task):
            raise err(("metrics", i), f"metric '{m}' needs task '{task}': " + _unknown(registry.TASKS, task))
    taken = set()
    for name in _names(registry.TASKS):
        if name in catalog.CATALOG["tasks"]:
            taken.update(catalog.CATALOG["tasks"][name].options)
            continue
        opts = registry.TASKS.options(name)
        if opts is None:
            return
        taken.update(opts)
    for key in data.get("task", {}) or {}:
        if key not in taken:
            raise err(("task", key), f"no registered task takes the option '{key}' "
                                     f"(allowed: {', '.join(sorted(taken)) or 'none'})")


def _snr_fields(data: dict):
    """``(path, value)`` of every SNR in dB a user gives for the sweep (lists, ranges, per-hop values)."""
    for base in (("snr_db",), ("quick", "snr_db")):
        spec = data.get(base[0]) if len(base) == 1 else (data.get("quick") or {}).get("snr_db")
        if isinstance(spec, dict):
            yield from ((base + (k,), spec[k]) for k in ("start", "stop"))
        elif isinstance(spec, list):
            for i, v in enumerate(spec):
                yield from (((*base, i, j), u) for j, u in enumerate(v)) if isinstance(v, list) else [(base + (i,), v)]
    for i, v in enumerate(data["channel"].get("hop_snr_db") or []):
        if not isinstance(v, str):
            yield ("channel", "hop_snr_db", i), v


def _check_snr_values(data: dict, err) -> None:
    """SNRs within +-MAX_ABS_SNR_DB, and no SNR point listed twice (a results row is keyed by its SNR)."""
    for path, v in _snr_fields(data):
        if isinstance(v, (int, float)) and abs(v) > limits.MAX_ABS_SNR_DB:
            raise err(path, f"{v!r} dB is outside the allowed range -{limits.MAX_ABS_SNR_DB:g} .. "
                            f"{limits.MAX_ABS_SNR_DB:g} dB (the noise variance 10^(-SNR/10) must stay a float32)")
    for base, spec in ((("snr_db",), data["snr_db"]), (("quick", "snr_db"), (data.get("quick") or {}).get("snr_db"))):
        if isinstance(spec, list):
            seen: dict = {}
            for i, v in enumerate(spec):
                key = tuple(float(u) for u in v) if isinstance(v, list) else float(v)
                if key in seen:
                    raise err(base + (i,), f"the SNR point {v!r} is listed twice (items {seen[key]} and {i}); "
                                           f"each point is computed once, list it once")
                seen[key] = i


def _check_values(data: dict, err) -> list[int]:
    """Pass 3b: checks that need several values or the file system.

    Output
    ------
    The rate points as channel uses per image where known without loading the data
    (:func:`_channel_uses`), for the checks of the schemes' codes.
    """
    if limits.unsafe_run_name(data["name"]):
        raise err(("name",), f"{data['name']!r} cannot name the run folder runs/<name> (it would write outside "
                             f"runs/); allowed: {limits.RUN_NAME_ALLOWED}")
    spec = data["snr_db"]
    if isinstance(spec, dict):
        if spec["step"] <= 0:
            raise err(("snr_db", "step"), f"must be > 0 (got {spec['step']})")
        if spec["stop"] < spec["start"]:
            raise err(("snr_db", "stop"), f"must be >= start ({spec['start']}) (got {spec['stop']})")
    n_snr = _range_points(spec) if isinstance(spec, dict) else len(spec)
    if n_snr > limits.MAX_SNR_POINTS:
        raise err(("snr_db",), f"{n_snr:,} SNR points exceed the limit of {limits.MAX_SNR_POINTS:,} "
                               f"(use a coarser step)")
    q = data.get("quick") or {}
    qspec = q.get("snr_db")
    if isinstance(qspec, dict):
        if qspec["stop"] < qspec["start"]:
            raise err(("quick", "snr_db", "stop"), f"must be >= start ({qspec['start']}) (got {qspec['stop']}): "
                                                   f"the quick grid would be empty")
        n_quick = _range_points(qspec)
        if n_quick > limits.MAX_SNR_POINTS:
            raise err(("quick", "snr_db"), f"{n_quick:,} SNR points exceed the limit of {limits.MAX_SNR_POINTS:,}")
    ch = data["channel"]
    hops = channel_sweep.max_hops(ch)
    n_variants = channel_sweep.chain_count(ch) if channel_sweep.is_sweep(ch) else 1
    if isinstance(ch.get("hops"), list):
        if "hop_snr_db" in ch:
            raise err(("channel", "hop_snr_db"), "per-hop SNRs need a fixed number of hops; with a sweep over hops "
                                                 "every hop takes the snr_db grid's value")
        if isinstance(spec, list) and any(isinstance(v, list) for v in spec):
            i = next(i for i, v in enumerate(spec) if isinstance(v, list))
            raise err(("snr_db", i), "per-hop SNR lists need a fixed number of hops; with a sweep over hops give "
                                     "one SNR per point (every hop takes it)")
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
    _check_snr_values(data, err)
    rate = data["rate"]
    if ("channel_uses" in rate) == ("bandwidth_ratio" in rate):
        raise err(("rate",), "give exactly one of channel_uses, bandwidth_ratio")
    key = "channel_uses" if "channel_uses" in rate else "bandwidth_ratio"
    n_rates = len(rate[key]) if isinstance(rate[key], list) else 1
    grid = n_snr * n_rates * len(data["schemes"]) * n_variants
    if grid > limits.MAX_GRID_POINTS:
        chains = f" x {n_variants:,} chains" if n_variants > 1 else ""
        raise err(("snr_db",), f"the grid has {grid:,} points ({n_snr} SNR x {n_rates} rate x "
                               f"{len(data['schemes'])} scheme(s){chains}), more than the limit of "
                               f"{limits.MAX_GRID_POINTS:,}")
    try:
        uses = _channel_uses(data)
    except _ChannelUsesError as exc:
        raise err(exc.path, str(exc)) from None
    batch = min(data["evaluation"]["batch_size"], data["dataset"]["test_size"])
    have = limits.available_memory_bytes() if uses else None
    for k, path in uses:
        if k > limits.MAX_CHANNEL_USES:
            raise err(path, f"{k:,} channel uses per image exceed the limit of {limits.MAX_CHANNEL_USES:,}")
        need = limits.batch_memory_bytes(k, batch, hops)
        if have is not None and need > have:
            raise err(path, f"{k:,} channel uses per image need at least {need / 2**30:.1f} GiB for one batch of "
                            f"{batch} images; the machine has {have / 2**30:.1f} GiB available (lower the rate "
                            f"or evaluation.batch_size)")
    ds = data["dataset"]
    path = ds.get("params", {}).get("path")
    if isinstance(path, str) and path and not Path(os.path.expanduser(path)).exists():
        raise err(("dataset", "params", "path"), f"path does not exist: {path}")
    labels = [s.get("label") for s in data["schemes"]]
    seen = set()
    for i, lab in enumerate(labels):
        if lab in seen:
            raise err(("schemes", i, "label"), f"duplicate scheme label {lab!r}; labels must be unique")
        seen.add(lab)
    return [k for k, _ in uses]


def _channel_uses(data: dict) -> list[tuple[int, tuple]]:
    """``[(k, path)]``: the rate points as channel uses per image, where known without loading the data."""
    rate = data["rate"]
    if "channel_uses" in rate:
        v = rate["channel_uses"]
        return [(int(x), ("rate", "channel_uses") + ((i,) if isinstance(v, list) else ()))
                for i, x in enumerate(v if isinstance(v, list) else [v])]
    ds = data["dataset"]
    shape = catalog.dataset_image_shape(ds["name"], ds.get("params") or {}) \
        if _builtin(registry.DATASETS, ds["name"]) and _plain_size_params(ds.get("params") or {}) else None
    if shape is None:
        return []
    n = shape[0] * shape[1] * shape[2]
    v = rate["bandwidth_ratio"]
    out = []
    for i, x in enumerate(v if isinstance(v, list) else [v]):
        path = ("rate", "bandwidth_ratio") + ((i,) if isinstance(v, list) else ())
        k = int(round(float(x) * n))
        if k < 1:
            raise _ChannelUsesError(path, f"{x!r} of {n} source values ({shape[0]}x{shape[1]}x{shape[2]}) is "
                                          f"{float(x) * n:.3g} channel uses per image, less than one; the smallest "
                                          f"ratio is {0.5 / n:.3g} (one channel use)")
        out.append((k, path))
    return out


class _ChannelUsesError(ValueError):
    """A rate point below one channel use (reported against ``path``)."""

    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = path


def _plain_size_params(params: dict) -> bool:
    """The size options hold valid values (else the catalogue reports them; no shape here)."""
    return all(catalog.size_pair(params.get(k)) is None for k in ("image_size", "pad_to")) \
        and params.get("channels") in (None, 1, 3)


def _fill_defaults(data: dict, schema: dict) -> dict:
    """Apply the schema's top-level and dataset defaults; give each scheme a label."""
    data = copy.deepcopy(data)
    props = schema["properties"]
    default_plots = "plots" not in data
    for key, sub in props.items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
    if default_plots and isinstance(data.get("metrics"), list):
        # the default plots of the metrics the scenario lists (a plot of an unlisted metric is an error)
        data["plots"] = [p for p in data["plots"] if p.split("_vs_")[0] in data["metrics"]]
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

    if raw is None:
        raise ScenarioError("the file is empty (or holds only comments); a scenario is a mapping of fields "
                            "(name, dataset, snr_db, ...)", file=source, line=1)
    if not isinstance(raw, dict):
        raise ScenarioError("the document must be a mapping of fields (name, dataset, snr_db, ...)",
                            file=source, line=1)
    for path, value in limits.non_finite_numbers(raw):
        raise err(path, f"must be a finite number (got {value}): NaN and infinity are not allowed anywhere "
                        f"in a scenario")
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # the deepest error is the most specific; prefer it over a oneOf summary
        e = max(errors, key=lambda e: len(e.absolute_path))
        if e.validator in ("oneOf", "anyOf") and e.context:
            # the alternative of the value's own type explains best (a range mapping missing its step,
            # not "must be an array")
            e = max(e.context, key=lambda c: (c.validator != "type", len(c.absolute_path)))
        path = tuple(e.absolute_path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            extra = sorted((k for k in e.instance if k not in e.schema.get("properties", {})), key=str)
            path += tuple(extra[:1])  # the line and field of the (first) unknown key
        raise err(path, _schema_error_message(e))
    _load_scenario_plugins(raw.get("plugins") or [], source, err)
    data = _fill_defaults(raw, schema)
    channel_uses = _check_values(data, err)
    _check_registry_names(data, err, channel_uses)
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

    The file is read with a size cap and must be UTF-8 text; YAML aliases and nesting
    are bounded before the document is built (:mod:`linksim.limits`).  Nothing here
    imports TensorFlow: built-in components are checked against :mod:`linksim.catalog`.

    Raises
    ------
    ScenarioError
        If the file is missing, unreadable, too large, not UTF-8 text, not valid YAML,
        breaks a limit, or does not follow the schema; the message names the file, the
        line, the field and the allowed values.
    """
    path = str(path)
    try:
        text = limits.read_text_capped(path)
    except limits.LimitError as exc:
        raise ScenarioError(str(exc), file=path, line=exc.line) from None
    except FileNotFoundError:
        raise ScenarioError("file not found", file=path) from None
    except IsADirectoryError:
        raise ScenarioError("is a folder, not a scenario file", file=path) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    try:
        limits.check_yaml_expansion(text)
        raw = yaml.load(text, Loader=ScenarioLoader)
    except limits.LimitError as exc:
        raise ScenarioError(str(exc), file=path, line=exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "could not determine a constructor for the tag" in problem:
            tag = problem.rsplit(" ", 1)[-1]
            raise ScenarioError(f"the YAML tag {tag} is not allowed: a scenario holds plain data (mappings, lists, "
                                f"text, numbers, true/false, null), never Python objects or custom tags", file=path,
                                line=(mark.line + 1) if mark else None) from None
        raise ScenarioError(f"YAML syntax error: {problem}", file=path,
                            line=(mark.line + 1) if mark else None) from None
    except RecursionError:
        raise ScenarioError(f"lists and mappings nested too deeply (limit {limits.MAX_YAML_DEPTH})",
                            file=path) from None
    return validate_scenario_dict(raw, source=path, lines=_line_map(text))
