"""The no-TensorFlow option table (linksim.catalog) against the real registered classes.

``linksim validate`` checks options with :mod:`linksim.catalog` so that it need not
import TensorFlow.  These tests import the real components and fail when the two
disagree: a registered name or option missing from the table, or a probe value that
a real constructor refuses but the table lets through.
"""

import math

import numpy as np
import pytest

from linksim import catalog, registry

#: Hostile and ordinary values tried on every option (both must agree that the refused ones are refused).
PROBES = [None, True, False, 0, 1, -1, 2, 3, 4, 7, 17, 1944, 0.0, 0.05, 0.5, 1.5, -0.5, 1e-5, math.nan,
          math.inf, -math.inf, 10**12, "", "bogus", "awgn", "scenario", "3/4", "binary", "onoff", "conv4",
          "header", "full", "abbreviated", "4:4:4", "fixed", "measured", "gaussian", "all", "batch",
          [], [1, 2], [2.0, 5.0], [5, 2], [16, 16], [64, 64], [1, 2, 3, 4], [0, 1, 2, 3], [[1, 0], [-1, 0]], {},
          {"a": 1}]

#: Options that need more than one probe to be built (and are checked by other tests here).
SKIP_OPTIONS = {("schemes", "jscc"): {"architecture", "stages"},
                ("schemes", "separation"): {"codec", "channel_code", "modulation"},
                ("schemes", "sscc"): {"codec", "channel_code", "modulation"},
                ("channels", "multihop"): {"relay", "hop"},
                ("tasks", "classification"): {"classifier"}}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for cls in ("a", "b"):
        (root / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")
    return root


def _required(title, name, folder):
    return {("schemes", "jscc"): {"architecture": {"type": "deepjscc"}, "stages": [{"losses": [{"type": "mse"}]}]},
            # the ideal code builds no LDPC decoder: quick to construct many times
            ("schemes", "separation"): {"codec": {"type": "jpeg"}, "channel_code": {"type": "ideal"}},
            ("schemes", "sscc"): {"codec": {"type": "jpeg"}, "channel_code": {"type": "ideal"}},
            ("relays", "qf"): {"bits": 4},
            ("datasets", "image_folder"): {"path": str(folder)}}.get((title, name), {})


def _real_refuses(title, name, params) -> str | None:
    reg = registry.ALL[title]
    try:
        if title == "schemes":
            reg.get(name)(**params)
        else:
            reg.create(name, **params)
    except Exception as exc:  # noqa: BLE001 - any refusal counts
        return f"{type(exc).__name__}: {exc}"
    return None


def _table_refuses(title, name, params) -> list:
    if title == "schemes":
        return list(catalog.check_scheme(name, params))
    if title == "datasets":
        return list(catalog.check_dataset(name, params))
    if title == "channels":
        return list(catalog.check_channel({"type": name, **params}))
    return list(catalog.check_params(title, name, params))


TITLES = [t for t in registry.ALL]


def builtin(title) -> list:
    """The names linksim itself registers (other tests register plug-in components in the same process)."""
    reg = registry.ALL[title]
    if title == "metrics":   # every metric is held by a class made in linksim.metrics; its own list
        from linksim.metrics import _ALL

        return sorted(m.name for m in _ALL)
    out = []
    for n in reg.names():
        obj = reg.get(n)
        module = getattr(obj, "__module__", None) or type(obj).__module__
        if module.startswith("linksim."):
            out.append(n)
    return out


@pytest.mark.parametrize("title", TITLES)
def test_the_table_names_every_registered_component_and_no_other(title):
    assert sorted(catalog.CATALOG[title]) == builtin(title)


@pytest.mark.parametrize("title", [t for t in TITLES if t not in ("metrics", "plots")])
def test_the_table_lists_the_options_each_registered_component_takes(title):
    reg = registry.ALL[title]
    for name in builtin(title):
        spec = catalog.CATALOG[title][name]
        real = reg.options(name)
        if real is None:
            assert spec.open, f"{title} {name}: takes **options only"
        else:
            assert list(spec.options) == real, f"{title} {name}"


def test_the_task_metrics_name_the_tasks_the_real_metrics_need():
    from linksim.metrics import get_metric

    for name in builtin("metrics"):
        m = get_metric(name)
        assert catalog.METRIC_TASKS.get(name) == (m.task if m.kind == "task" else None), name


def test_the_classifier_options_are_the_real_ones():
    from linksim.tasks.classifier import DEFAULT_MODEL, DEFAULT_TRAINING, TRAIN_SEED_OPTION

    assert set(catalog.CLASSIFIER_OPTIONS) == set(DEFAULT_MODEL) | set(DEFAULT_TRAINING) | {TRAIN_SEED_OPTION}


def test_the_table_accepts_every_default():
    import inspect

    for title in TITLES:
        if title in ("metrics", "plots"):
            continue
        for name in builtin(title):
            sig = inspect.signature(registry.ALL[title].get(name))
            for p in sig.parameters.values():
                if p.name in catalog.CATALOG[title][name].options and p.default is not p.empty:
                    d = list(p.default) if isinstance(p.default, tuple) else p.default
                    assert catalog.CATALOG[title][name].options[p.name](d) is None, (title, name, p.name, d)


@pytest.mark.parametrize("title", [t for t in TITLES if t not in ("metrics", "plots")])
def test_every_probe_value_a_constructor_refuses_is_refused_by_the_table(title, image_folder):
    missed = []
    for name in builtin(title):
        base = _required(title, name, image_folder)
        for option in catalog.CATALOG[title][name].options:
            if option in SKIP_OPTIONS.get((title, name), ()):
                continue
            for probe in PROBES:
                if (title, name, option) == ("channels", "multihop", "hops") and isinstance(probe, list) \
                        and probe and all(isinstance(h, int) and 1 <= h <= 64 for h in probe):
                    continue  # a scenario's list of hops is a sweep (linksim.channel_sweep); the layer is one chain
                params = {**base, option: probe}
                real = _real_refuses(title, name, params)
                if real and not _table_refuses(title, name, params):
                    missed.append(f"{name}.{option}={probe!r}: {real[:120]}")
    assert not missed, "\n".join(missed)


def test_the_table_refuses_what_a_jscc_stage_or_loss_refuses():
    missed = []
    for key in ("epochs", "learning_rate", "steps_per_epoch", "name", "weight", "ramp_epochs", "gsw", "tau"):
        for probe in PROBES:
            loss = {"type": "semantic" if key in ("gsw", "tau") else "mse"}
            stage = {"losses": [loss]}
            if key in ("weight", "ramp_epochs", "gsw", "tau"):
                loss[key] = probe
            else:
                stage[key] = probe
            params = {"architecture": {"type": "deepjscc"}, "stages": [{"losses": [{"type": "mse"}]}, stage]}
            real = _real_refuses("schemes", "jscc", params)
            if real and not _table_refuses("schemes", "jscc", params):
                missed.append(f"{key}={probe!r}: {real[:120]}")
    assert not missed, "\n".join(missed)


@pytest.mark.parametrize("params", [
    {"codec": {"type": "jpeg", "headers": "abbreviated", "optimize": True}},
    {"codec": {"type": "jpeg"}, "channel_code": {"type": "ldpc5g", "k": 2000, "n": 1944}},
    {"codec": {"type": "jpeg"}, "channel_code": {"type": "ldpc_80211n", "rate": "7/8"}},
    {"codec": {"type": "webp", "method": 9}},
    {"codec": {"type": "jpeg"}, "modulation": {"type": "qam", "num_bits_per_symbol": 5}},
    {"codec": {"type": "jpeg"}, "channel_code": {"type": "ldpc5g", "bogus": 1}},
])
def test_separation_parts_the_real_scheme_refuses_are_refused_by_the_table(params):
    assert _real_refuses("schemes", "separation", params)
    assert _table_refuses("schemes", "separation", params)


@pytest.mark.parametrize("params", [
    {"hops": 3, "relay": ["af"]},
    {"relay": "qf", "relay_params": {"bits": 0}},
    {"relay": "qf", "relay_params": {"qf": {"bits": 99}}},
    {"relay": "qf", "relay_params": {"qf": {"bits": 4}, "bits": 3}},
    {"relay": "af", "relay_params": {"gain": "huge"}},
    {"relay": "qf"},
    {"hop": {"type": "multihop"}},
    {"hop": [{"type": "awgn"}], "hops": 3},
    {"hop": {"type": "awgn", "bogus": 1}},
])
def test_multihop_options_the_real_channel_refuses_are_refused_by_the_table(params):
    assert _real_refuses("channels", "multihop", params)
    assert _table_refuses("channels", "multihop", params)


def test_the_catalog_module_imports_without_tensorflow():
    import subprocess
    import sys

    code = "import sys, linksim.catalog; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
