"""The evaluation's rows and their aggregation over batches; tasks called through the TASKS registry."""

import math

import numpy as np
import pytest

from linksim.registry import METRICS, TASKS
from linksim.run.directory import REFERENCE
from linksim.run.evaluation import Aggregate, build_tasks, make_row, reference_row
from linksim.run.setup import HopSNR, point_seed
from linksim.scenario import validate_scenario_dict
from linksim.tasks.base import Task


class FakeScheme:
    def __init__(self, digital):
        self.label, self.digital = "fake", digital


class Counting(Task):
    """Task counting images whose mean exceeds 0.5 (metric 'bright')."""

    metrics = ("bright",)
    label = "brightness counter"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.calls = []

    def prepare(self, context):
        self.x_test = context.x_test

    def evaluate(self, received_images, indices):
        self.calls.append(np.asarray(indices))
        return {"b": np.asarray(received_images).mean(axis=(1, 2, 3)) > self.threshold}

    def summarise(self, outputs, indices):
        return {"bright": float(np.mean(outputs["b"])), "n_seen": len(indices)}

    def _reference_images(self):
        return self.x_test


def two_batches(digital=False):
    agg = Aggregate()
    counts = {"images": 2, "source_bits": 800, "channel_uses": 200}
    if digital:
        counts.update(bits=1000, bit_errors=10, blocks=4, block_errors=1, decode_failures=1)
    agg.add(counts, {"psnr": [10.0, 20.0]}, {"count": {"b": np.array([True, False])}})
    agg.add({**counts, "images": 1, "source_bits": 400, "channel_uses": 100}, {"psnr": [float("nan")]},
            {"count": {"b": np.array([True])}})
    return agg


def test_counts_add_up_over_batches_and_metrics_average_over_images_not_batches():
    agg = two_batches(digital=True)
    row = make_row(FakeScheme(True), {"snr_db": 3.0, "hop_snr_db": "3", "snr_explicit_per_hop": False}, agg,
                   (10, 10, 1), 1.23456, topology={"hops": 1, "relay": "none"})
    assert row["images"] == 3
    assert row["psnr_db"] == 15.0  # the NaN image is left out of the mean
    assert row["bpp"] == pytest.approx(1200 / (3 * 100))
    assert row["channel_uses"] == 100 and row["bandwidth_ratio"] == 1.0 and row["used_channel_uses"] == 100
    assert row["ber"] == 20 / 2000 and row["bler"] == 2 / 8 and row["decode_failures"] == 2
    assert row["bits"] == 2000 and row["blocks"] == 8 and row["wall_s"] == 1.235
    assert row["scheme"] == "fake" and row["scheme_type"] == "FakeScheme" and row["hops"] == 1


def test_the_row_columns_come_in_a_fixed_order():
    row = make_row(FakeScheme(True), {"snr_db": 3.0, "hop_snr_db": "3", "snr_explicit_per_hop": False},
                   two_batches(True), (10, 10, 1), 0.0, {"count": Counting()}, {"hops": 1, "relay": "none"})
    assert list(row) == ["scheme", "scheme_type", "snr_db", "hop_snr_db", "snr_explicit_per_hop", "hops", "relay",
                         "psnr_db", "bright", "n_seen", "bpp", "channel_uses", "bandwidth_ratio",
                         "used_channel_uses", "ber", "bler", "decode_failures", "bits", "blocks", "images",
                         "wall_s"]


def test_an_analog_scheme_has_no_bit_columns_and_all_nan_metrics_stay_nan():
    agg = Aggregate()
    agg.add({"images": 2, "source_bits": float("nan"), "channel_uses": 10}, {"ms_ssim": [np.nan, np.nan]})
    row = make_row(FakeScheme(False), {"snr_db": 0.0}, agg, (4, 4, 1), 0.0)
    assert "ber" not in row and "bler" not in row and "decode_failures" not in row
    assert math.isnan(row["ms_ssim"]) and math.isnan(row["bpp"])
    assert row["used_channel_uses"] == 5  # the scheme did not report a shorter transmission


def test_a_task_summarises_the_outputs_of_every_batch_together():
    row = make_row(FakeScheme(False), {"snr_db": 0.0}, two_batches(), (10, 10, 1), 0.0, {"count": Counting()})
    assert row["bright"] == pytest.approx(2 / 3) and row["n_seen"] == 3


def test_the_reference_row_joins_every_tasks_values_on_the_original_images():
    task = Counting()
    task.x_test = np.concatenate([np.ones((3, 2, 2, 1)), np.zeros((1, 2, 2, 1))])
    row = reference_row({"count": task}, {"hops": 2, "relay": "df"}, images=4)
    assert row["scheme"] == REFERENCE and row["scheme_type"] == "Reference" and math.isnan(row["snr_db"])
    assert row["bright"] == 0.75 and row["images"] == 4 and row["relay"] == "df"


def test_the_evaluation_builds_the_tasks_its_metrics_name_with_their_options(monkeypatch):
    from linksim.metrics import Metric

    monkeypatch.setitem(TASKS._entries, "count", Counting)
    metric = Metric("bright", "bright", "task", "Share of bright images.", task="count")
    monkeypatch.setitem(METRICS._entries, "bright", type("bright", (), {"metric": metric}))
    raw = {"name": "t", "dataset": {"name": "embedded", "test_size": 4}, "snr_db": [0],
           "rate": {"channel_uses": 486}, "schemes": [{"type": "separation", "codec": {"type": "webp"}}],
           "metrics": ["psnr", "bright"], "plots": [], "task": {"threshold": 0.25}}
    scen = validate_scenario_dict(raw)
    x = np.random.default_rng(0).random((4, 2, 2, 1))
    tasks = build_tasks(scen, (None, x, None, x, None), store=None, progress=False, train_missing=False)
    assert list(tasks) == ["count"] and tasks["count"].threshold == 0.25
    assert tasks["count"].x_test is x


def test_a_task_option_no_task_takes_is_refused_naming_the_allowed_ones():
    raw = {"name": "t", "dataset": {"name": "embedded", "test_size": 4}, "snr_db": [0],
           "rate": {"channel_uses": 98}, "schemes": [{"type": "separation", "codec": {"type": "webp"}}],
           "task": {"clasifier": {}}}
    with pytest.raises(ValueError, match=r"task\.clasifier.*allowed: .*classifier"):
        validate_scenario_dict(raw)


def test_hop_snr_columns_for_swept_fixed_and_explicit_points():
    assert HopSNR(1, None).columns(7) == {"snr_db": 7.0, "hop_snr_db": "7", "snr_explicit_per_hop": False}
    assert HopSNR(2, None).per_hop(7) == 7.0
    fixed = HopSNR(2, ["sweep", 20])
    assert fixed.per_hop(5) == [5.0, 20.0] and fixed.columns(5)["hop_snr_db"] == "5/20"
    explicit = HopSNR(2, None).columns([12, 4])
    assert explicit == {"snr_db": 4.0, "hop_snr_db": "12/4", "snr_explicit_per_hop": True}


def test_point_seeds_depend_on_scheme_and_point_only():
    assert point_seed(1, "a", 5) == point_seed(1, "a", 5.0)
    assert len({point_seed(1, "a", 5), point_seed(1, "b", 5), point_seed(1, "a", 6), point_seed(2, "a", 5),
                point_seed(1, "a", [5, 20])}) == 5
