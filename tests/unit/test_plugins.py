"""Plug-ins: a user's Python file registers components that scenarios then name (tested from outside the package)."""

import textwrap

import pandas as pd
import pytest

from linksim.cli import main
from linksim.registry import PluginError, load_plugin
from linksim.scenario import ScenarioError, load_scenario

PLUGIN = '''
"""A plug-in from outside linksim: a data set, an image metric and a scheme."""
import numpy as np

from linksim.data.base import ArrayDataset
from linksim.metrics import Metric, register_metric
from linksim.registry import DATASETS, SCHEMES
from linksim.schemes.base import BatchResult, Scheme


@DATASETS.register("plugin_noise_images")
class NoiseImages(ArrayDataset):
    """Random 8x8 grey images made in memory, two classes (a plug-in data set)."""

    name = "plugin_noise_images"
    class_names = ("even", "odd")

    def __init__(self, brightness: float = 1.0, image_size=None, pad_to=None, channels=None):
        super().__init__(image_size=image_size, pad_to=pad_to, channels=channels)
        self.brightness = brightness

    def native_shape(self):
        return (8, 8, 1)

    def _arrays(self, split):
        n = 30 if split == "train" else 10
        rng = np.random.default_rng(0 if split == "train" else 1)
        x = (rng.random((n, 8, 8, 1)) * 255 * self.brightness).astype(np.uint8)
        return x, (np.arange(n) % 2).astype(np.int64)


def mean_abs_error(x, x_hat):
    return np.mean(np.abs(np.asarray(x, np.float64) - np.asarray(x_hat, np.float64)), axis=(1, 2, 3))


register_metric(Metric("plugin_mae", "plugin_mae", "image", "Mean absolute pixel error (a plug-in metric).",
                       mean_abs_error))


@SCHEMES.register("plugin_uncoded")
class Uncoded(Scheme):
    """Pixels sent as they are, with Gaussian noise of the channel's SNR (a plug-in scheme)."""

    def __init__(self, label=None, gain: float = 1.0):
        super().__init__(label or "uncoded")
        self.gain = gain

    def prepare(self, context):
        self.k = context.channel_uses

    def encode(self, images):
        return np.asarray(images, np.float32)

    def evaluate(self, state, snr_db):
        snr = float(np.min(snr_db))
        noise = np.random.default_rng(0).normal(size=state.shape) * 10 ** (-snr / 20)
        return BatchResult(np.clip(state * self.gain + noise, 0, 1).astype(np.float32),
                           {"images": len(state), "source_bits": float("nan"), "channel_uses": self.k * len(state)})
'''

SCENARIO = """\
name: plugged
seed: 1
plugins: [{plugin}]
dataset: {{name: plugin_noise_images, test_size: 4, params: {{brightness: 0.5}}}}
snr_db: [0, 20]
rate: {{channel_uses: 32}}
schemes:
  - type: plugin_uncoded
    label: raw
    gain: 1.0
metrics: [psnr, plugin_mae]
plots: [psnr_vs_snr, plugin_mae_vs_gain]
evaluation: {{example_images: 0}}
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    (d / "my_components.py").write_text(PLUGIN)
    return d


def write_scenario(folder, plugin_entry, name="s.yaml", **replace):
    text = SCENARIO.format(plugin=plugin_entry)
    for a, b in replace.items():
        text = text.replace(a, b)
    p = folder / name
    p.write_text(text)
    return p


def test_a_plugin_on_the_command_line_makes_its_components_nameable(plugin_dir, tmp_path, capsys):
    scen = write_scenario(tmp_path, "", "s.yaml")
    scen.write_text(scen.read_text().replace("plugins: []\n", ""))
    assert main(["validate", str(scen), "--plugin", str(plugin_dir / "my_components.py")]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["list", "--plugin", str(plugin_dir / "my_components.py")]) == 0
    out = capsys.readouterr().out
    for word in ("plugin_noise_images", "plugin_mae", "plugin_uncoded", "Mean absolute pixel error"):
        assert word in out, word


def test_a_scenario_runs_with_the_plugin_components_it_names(plugin_dir, tmp_path, capsys):
    # the plugins: entry is relative to the scenario file, not to the working directory
    scen = write_scenario(plugin_dir, "my_components.py", "run.yaml")
    out = tmp_path / "run"
    assert main(["run", str(scen), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df.scheme) == ["raw", "raw"] and list(df.snr_db) == [0, 20]
    assert "plugin_mae" in df.columns and "psnr_db" in df.columns
    lo, hi = df.set_index("snr_db").loc[0], df.set_index("snr_db").loc[20]
    assert lo.plugin_mae > hi.plugin_mae > 0  # more noise, larger error
    assert (out / "psnr_vs_snr.png").exists() and (out / "plugin_mae_vs_gain.png").exists()
    assert load_scenario(scen).data["plugins"] == ["my_components.py"]


def test_a_missing_plugin_file_is_named_and_exits_2(tmp_path, capsys):
    scen = write_scenario(tmp_path, "")
    assert main(["validate", str(scen), "--plugin", str(tmp_path / "nowhere.py")]) == 2
    err = capsys.readouterr().err
    assert "nowhere.py" in err and "not found" in err and "Traceback" not in err


def test_a_plugin_that_fails_to_import_is_named_with_its_error(tmp_path, capsys):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("x = 1\nraise RuntimeError('half-written plug-in')\n")
    assert main(["list", "--plugin", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 2" in err and "half-written plug-in" in err
    with pytest.raises(PluginError, match="not a Python file"):
        load_plugin(tmp_path)  # a folder is not a plug-in


def test_a_missing_scenario_plugin_points_at_the_plugins_field(tmp_path):
    scen = write_scenario(tmp_path, "gone.py")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(scen)
    assert exc.value.field == "plugins[0]" and exc.value.line == 3 and "gone.py" in str(exc.value)


def test_a_plugin_is_imported_once_however_often_it_is_named(plugin_dir):
    a = load_plugin(plugin_dir / "my_components.py")
    b = load_plugin("my_components.py", base=plugin_dir)
    assert a is b


def test_without_the_plugin_its_names_are_unknown_and_the_error_lists_the_registered_ones(tmp_path):
    scen = tmp_path / "s.yaml"
    scen.write_text(textwrap.dedent("""\
        name: t
        dataset: {name: embedded, test_size: 4}
        snr_db: [0]
        rate: {channel_uses: 98}
        schemes: [{type: separation, codec: {type: webp}}]
        metrics: [psnr, not_a_metric]
        """))
    with pytest.raises(ScenarioError, match=r"metrics\[1\].*unknown metric 'not_a_metric'.*psnr"):
        load_scenario(scen)


def test_register_metric_refuses_a_bad_kind_or_a_task_metric_without_its_task():
    from linksim.metrics import Metric, register_metric

    with pytest.raises(ValueError, match="image, link, task"):
        register_metric(Metric("bad_kind", "bad_kind", "pixel", "?", None))
    with pytest.raises(ValueError, match="names the task"):
        register_metric(Metric("orphan", "orphan", "task", "?"))
