"""What a run sets up before it sweeps: seeds, data, rates, the channel and its per-hop SNRs, schemes.

Each of these is done here and nowhere else:

- seeding: :func:`set_seed` (the run) and :func:`point_seed` (one per (scheme, SNR point),
  so a resumed point equals a fresh one);
- data loading: :func:`load_data`;
- the rate grid: :func:`channel_uses_list`;
- the channel and the per-hop SNRs of a grid point: :func:`make_channel`, :class:`HopSNR`;
- schemes: :func:`build_scheme`, :func:`scheme_context`, :func:`prepare_scheme`;
- the tasks the scenario's metrics need: :func:`build_tasks`.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from linksim.registry import CHANNELS, SCHEMES, TASKS, is_plugin_component, plugin_failure
from linksim.run.directory import snr_key
from linksim.scenario import Scenario

__all__ = ["set_seed", "point_seed", "load_data", "channel_uses_for", "channel_uses_list", "HopSNR",
           "make_channel", "make_chains", "Chain", "trains_per_chain", "topology", "build_scheme", "scheme_context",
           "prepare_scheme", "dataset_spec", "build_tasks"]


# --------------------------------------------------------------------------- seeding

def set_seed(seed: int) -> None:
    """Seed Python, numpy, TensorFlow (Keras) and Sionna."""
    import keras
    import sionna.phy

    keras.utils.set_random_seed(seed)
    sionna.phy.config.seed = seed


def point_seed(seed: int, label: str, snr_db) -> int:
    """A seed per (scheme, SNR point), so a resumed point equals a fresh one.

    ``label`` is the scheme's label, with ``|k<channel uses>`` for a rate sweep and
    ``|<chain tag>`` for a channel sweep."""
    return (seed * 1_000_003 + zlib.crc32(f"{label}|{snr_key(snr_db)}".encode())) % (2**31 - 1)


# --------------------------------------------------------------------------- data

def dataset_spec(scenario: Scenario) -> dict:
    """``{"name", "params", "train_size"}`` of the scenario's data set (model-store keys use it)."""
    ds = scenario.data["dataset"]
    return {"name": ds["name"], "params": ds.get("params", {}), "train_size": ds.get("train_size")}


def load_data(scenario: Scenario):
    """The scenario's data set and its images as floats in [0, 1].

    The test subset (``test_size``) is drawn with the scenario's ``seed``; the
    training subset (``train_size``; all the training images when null, in the
    data set's order whatever the seed) with the fixed training seed
    :data:`~linksim.training.DEFAULT_TRAIN_SEED` (1234), so the trained models,
    whose store keys hold the data set but not the scenario's seed, do not depend
    on the evaluation seed.

    Output
    ------
    (dataset, x_train, y_train, x_test, y_test)

    Raises
    ------
    ScenarioError
        A data-set option or file that fails when loaded.
    """
    from linksim.data import get_dataset
    from linksim.data.base import DatasetError, to_float
    from linksim.training import DEFAULT_TRAIN_SEED

    ds_spec = scenario.data["dataset"]
    try:
        ds = get_dataset(ds_spec["name"], **ds_spec.get("params", {}))
        x_test, y_test = ds.load("test", ds_spec["test_size"], seed=scenario.seed)
        x_train, y_train = ds.load("train", ds_spec.get("train_size"), seed=DEFAULT_TRAIN_SEED)
    except DatasetError as exc:
        raise scenario.error(("dataset",), str(exc)) from None
    except TypeError as exc:
        raise scenario.error(("dataset", "params"), str(exc)) from None
    return ds, to_float(x_train), y_train, to_float(x_test), y_test


# --------------------------------------------------------------------------- rate

def channel_uses_for(rate: dict, image_shape) -> int:
    """Complex channel uses per image from the scenario's ``rate`` field (its first value).

    ``bandwidth_ratio`` is k/n with n = H * W * C source values; k is rounded to
    the nearest integer (at least 1).
    """
    return channel_uses_list(rate, image_shape)[0]


def channel_uses_list(rate: dict, image_shape) -> list[int]:
    """Every rate point of the scenario's ``rate`` field as channel uses per image.

    ``channel_uses`` and ``bandwidth_ratio`` take one value or a list (a rate sweep).
    """
    n = int(np.prod(image_shape))
    if "channel_uses" in rate:
        vals = rate["channel_uses"] if isinstance(rate["channel_uses"], list) else [rate["channel_uses"]]
        return [int(v) for v in vals]
    vals = rate["bandwidth_ratio"] if isinstance(rate["bandwidth_ratio"], list) else [rate["bandwidth_ratio"]]
    return [max(1, int(round(float(v) * n))) for v in vals]


# --------------------------------------------------------------------------- channel and per-hop SNRs

class HopSNR:
    """The per-hop SNRs of a grid point (scenario ``snr_db`` and ``channel.hop_snr_db``).

    Forms
    -----
    - one swept value for every hop (the default): ``snr_db: [0, 5, 10]``;
    - a sweep on some hops with the others fixed: ``channel: {hop_snr_db: [sweep, 20]}``
      (``sweep`` takes the grid's value, a number is fixed);
    - an explicit list per hop at every grid point: ``snr_db: [[5, 20], [10, 20]]``.
    """

    def __init__(self, hops: int, hop_snr_db: list | None):
        self.hops = int(hops)
        self.template = hop_snr_db

    def per_hop(self, point) -> list[float] | float:
        """What the scheme is given: one SNR for every hop, or a list per hop."""
        if isinstance(point, (list, tuple)):
            return [float(v) for v in point]
        if self.template is None:
            return float(point)
        return [float(point) if v == "sweep" else float(v) for v in self.template]

    def columns(self, point) -> dict:
        """``snr_db`` (the swept value; for an explicit list, the lowest hop SNR), ``hop_snr_db``, flags."""
        per = self.per_hop(point)
        if isinstance(per, float):
            per = [per] * self.hops
        explicit = isinstance(point, (list, tuple))
        return {"snr_db": float(min(per)) if explicit else float(point),
                "hop_snr_db": "/".join(f"{v:g}" for v in per), "snr_explicit_per_hop": explicit}


def make_channel(scenario: Scenario, spec: dict | None = None):
    """The scenario's channel layer and its :class:`HopSNR` (``hop_snr_db`` is not a layer option).

    ``spec`` is one chain of a channel sweep (:class:`~linksim.channel_sweep.ChannelVariant`);
    default the scenario's ``channel`` mapping.
    """
    ch_spec = dict(scenario.data["channel"] if spec is None else spec)
    hop_template = ch_spec.pop("hop_snr_db", None)
    try:
        channel = CHANNELS.create(ch_spec.pop("type"), **ch_spec)
    except (TypeError, ValueError) as exc:
        raise scenario.error(("channel",), str(exc)) from None
    return channel, HopSNR(channel.describe()["hops"], hop_template)


@dataclass
class Chain:
    """One chain of the scenario's channel (:mod:`linksim.channel_sweep`): the layer, its per-hop SNRs,
    the results columns that name it (``hops``, ``relay_<option>``) and whether the scenario sweeps chains."""

    channel: Any
    hop_snr: HopSNR
    columns: dict
    swept: bool

    @property
    def key(self) -> tuple:
        """The values of ``columns`` in a sweep (what tells this chain's results rows apart), else ``()``."""
        return tuple(self.columns.values()) if self.swept else ()

    @property
    def tag(self) -> str:
        """``3 hops, bits 4`` (empty when the scenario has one chain)."""
        from linksim.channel_sweep import variant_tag

        return variant_tag(self.columns) if self.swept else ""


def make_chains(scenario: Scenario) -> list[Chain]:
    """Every chain of the scenario's channel, in sweep order (one when nothing is swept)."""
    from linksim.channel_sweep import channel_variants, is_sweep

    ch = scenario.data["channel"]
    swept = is_sweep(ch)
    return [Chain(*make_channel(scenario, v.spec), dict(v.columns), swept) for v in channel_variants(ch)]


def trains_per_chain(scheme) -> bool:
    """Whether ``scheme``'s model depends on the chain (``train_channel: scenario``): one model per chain."""
    return getattr(scheme, "train_channel", "awgn") == "scenario"


@dataclass
class Setting:
    """What every use of a scenario (training, a run) starts from.

    Attributes
    ----------
    data : tuple
        ``(dataset, x_train, y_train, x_test, y_test)`` (:func:`load_data`).
    image_shape : tuple[int, int, int]
    ks : list of int
        The rate points as channel uses per image (:func:`channel_uses_list`).
    chains : list of Chain
        Every chain of the channel (:func:`make_chains`; one unless the scenario sweeps them).
    channel : Channel
        The first chain's layer.
    hop_snr : HopSNR
        The first chain's per-hop SNRs.
    """

    data: tuple
    image_shape: tuple
    ks: list
    chains: list

    @property
    def channel(self):
        return self.chains[0].channel

    @property
    def hop_snr(self) -> HopSNR:
        return self.chains[0].hop_snr


def load_setting(scenario: Scenario) -> Setting:
    """Seed with the scenario's seed, then load its data and build its channel(s)."""
    set_seed(scenario.seed)
    data = load_data(scenario)
    image_shape = tuple(int(s) for s in data[3].shape[1:])
    return Setting(data, image_shape, channel_uses_list(scenario.data["rate"], image_shape), make_chains(scenario))


def topology(channel, columns: dict | None = None) -> dict:
    """``hops`` and ``relay`` columns of the results table, from the channel's :meth:`describe`,
    and a swept chain's ``relay_<option>`` columns (``columns`` of a :class:`Chain`)."""
    facts = channel.describe()
    names = facts["relays"]
    return {**(columns or {}), "hops": int(facts["hops"]), "relay": "/".join(names) if names else "none"}


# --------------------------------------------------------------------------- schemes

def build_scheme(scenario: Scenario, index: int):
    """The scheme ``scenario.schemes[index]`` (not yet prepared).

    Raises
    ------
    ScenarioError
        An option the scheme refuses, pointing at the scheme's entry.
    """
    spec = dict(scenario.schemes[index])
    name = spec.pop("type")
    cls = SCHEMES.get(name)
    try:
        return cls(**spec)
    except (TypeError, ValueError, KeyError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise scenario.error(("schemes", index), msg) from None
    except Exception as exc:
        if not is_plugin_component(cls):
            raise
        raise scenario.error(("schemes", index), f"scheme {name!r}: " + plugin_failure(cls, "failed to build", exc)) \
            from None


def scheme_context(scenario: Scenario, image_shape, k: int, x_train, channel, store, progress,
                   train_missing: bool = True, y_train=None, num_classes: int | None = None):
    """What a scheme may use to prepare itself; ``extra["train_labels"]`` holds the training labels,
    ``extra["channel_sweep"]`` whether the scenario evaluates several chains."""
    from linksim.channel_sweep import is_sweep
    from linksim.schemes.base import SchemeContext

    return SchemeContext(image_shape=image_shape, channel_uses=k, train_images=x_train, channel=channel,
                         seed=scenario.seed, dataset_spec=dataset_spec(scenario), store=store,
                         progress=progress, train_missing=train_missing,
                         extra={"train_labels": y_train, "task": scenario.data.get("task", {}),
                                "num_classes": num_classes, "channel_sweep": is_sweep(scenario.data["channel"])})


def prepare_scheme(scenario: Scenario, index: int, scheme, ctx) -> None:
    """``scheme.prepare(ctx)``; a ValueError is reported against the scheme's entry."""
    try:
        scheme.prepare(ctx)
    except ValueError as exc:
        raise scenario.error(("schemes", index), str(exc)) from None
    except Exception as exc:
        if not is_plugin_component(type(scheme)):
            raise
        raise scenario.error(("schemes", index), f"scheme {scenario.schemes[index]['type']!r}: "
                             + plugin_failure(type(scheme), "failed to prepare", exc)) from None


# --------------------------------------------------------------------------- tasks

def build_tasks(scenario: Scenario, data, store, progress, train_missing: bool) -> dict:
    """The tasks the scenario's metrics need, prepared: ``{name: Task}`` in order of first use.

    Each task is built with the fields of the scenario's ``task:`` mapping it takes
    (e.g. ``classifier`` for ``classification``).

    Raises
    ------
    ScenarioError
        A task that cannot be prepared (e.g. an unlabelled data set), at field ``metrics``.
    """
    from linksim.metrics import task_names
    from linksim.tasks.base import TaskContext

    ds, x_train, y_train, x_test, y_test = data
    names = task_names(scenario.data["metrics"])
    if not names:
        return {}
    options = scenario.data.get("task", {}) or {}
    context = TaskContext(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                          dataset_spec=dataset_spec(scenario), image_shape=tuple(x_test.shape[1:]),
                          seed=scenario.seed, store=store, progress=progress, train_missing=train_missing)
    tasks = {}
    for name in names:
        allowed = TASKS.options(name)
        opts = dict(options) if allowed is None else {k: v for k, v in options.items() if k in allowed}
        task = TASKS.get(name)(**opts)
        if progress:
            print(f"{scenario.name}: loading or training the {task.label}", file=sys.stderr)
        try:
            task.prepare(context)
        except ValueError as exc:
            raise scenario.error(("metrics",), str(exc)) from None
        tasks[name] = task
    return tasks
