"""The training seed apart from the evaluation seed, and the training facts on every model card."""

from pathlib import Path

import numpy as np
import pytest

from linksim.registry import SCHEMES
from linksim.run.setup import build_scheme, load_setting, scheme_context
from linksim.scenario import load_scenario
from linksim.schemes.deepjscc import DeepJSCCScheme
from linksim.schemes.jscc import SCHEME_OPTIONS, JSCCScheme
from linksim.schemes.sdjscc import SDJSCCNoGSWScheme, SDJSCCScheme
from linksim.store import SHIPPED_DIR, ModelStore, spec_key
from linksim.tasks.classifier import classifier_spec, classifier_train_seed
from linksim.training import DEFAULT_TRAIN_SEED, training_facts

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
#: every registered scheme that is a JSCC scheme (presets included)
JSCC_TYPES = tuple(n for n in SCHEMES.names() if issubclass(SCHEMES.get(n), JSCCScheme))


def _jscc_contexts(seed: int, store):
    """(scheme, context) of every JSCC scheme of awgn_jscc_vs_sscc.yaml with the scenario's seed set to ``seed``."""
    scen = load_scenario(SCENARIOS / "awgn_jscc_vs_sscc.yaml")
    scen.data["seed"] = seed
    setting = load_setting(scen)
    x_train, y_train = setting.data[1], setting.data[2]
    out = []
    for i, s in enumerate(scen.schemes):
        if s["type"] not in JSCC_TYPES:
            continue
        for k in setting.ks:
            ctx = scheme_context(scen, setting.image_shape, k, x_train, setting.channel, store, progress=False,
                                 train_missing=False, y_train=y_train)
            out.append((build_scheme(scen, i), ctx))
    return out


@pytest.fixture(scope="module")
def shipped_store():
    return ModelStore([SHIPPED_DIR])


def test_a_scenario_with_seed_7_finds_the_shipped_models_under_the_keys_of_seed_1234(shipped_store):
    with_7, with_1234 = _jscc_contexts(7, shipped_store), _jscc_contexts(1234, shipped_store)
    assert len(with_7) == len(with_1234) >= 3
    for (scheme, ctx7), (_, ctx1234) in zip(with_7, with_1234):
        assert ctx7.seed == 7 and scheme.train_seed == DEFAULT_TRAIN_SEED
        np.testing.assert_array_equal(ctx7.train_images, ctx1234.train_images)   # the training data too
        for stage in range(len(scheme.stages)):
            spec = scheme.stage_spec(ctx7, stage)
            assert spec_key(spec) == spec_key(scheme.stage_spec(ctx1234, stage))
            assert shipped_store.find(scheme.stage_name(stage), spec) is not None, (scheme.label, stage)
    # preparing loads the shipped model: no training (train_missing=False would raise otherwise)
    scheme, ctx7 = with_7[0]
    scheme.prepare(ctx7)
    assert scheme.entry.path.parent == SHIPPED_DIR


def test_another_train_seed_gives_another_store_key_in_every_preset():
    from linksim.schemes.base import SchemeContext
    from linksim.channels import AWGNChannel

    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=98, train_images=np.zeros((300, 28, 28, 1)),
                        channel=AWGNChannel(), seed=7, dataset_spec={"name": "embedded"},
                        extra={"train_labels": np.arange(300) % 10, "task": {}, "num_classes": 10})
    assert "train_seed" in SCHEME_OPTIONS
    for cls in (DeepJSCCScheme, SDJSCCScheme, SDJSCCNoGSWScheme):
        default, other = cls(snr_train_db=5), cls(snr_train_db=5, train_seed=5)
        assert default.stage_spec(ctx, 0)["seed"] == DEFAULT_TRAIN_SEED
        assert other.stage_spec(ctx, 0)["seed"] == 5
        assert spec_key(other.store_spec(ctx)) != spec_key(default.store_spec(ctx))
        assert spec_key(cls(snr_train_db=5, train_seed=1234).store_spec(ctx)) == spec_key(default.store_spec(ctx))
    generic = JSCCScheme(**DeepJSCCScheme(train_seed=5).get_config())
    assert generic.train_seed == 5 and generic.get_config()["train_seed"] == 5
    assert SCHEMES.create("deepjscc", train_seed=5).train_seed == 5


@pytest.mark.parametrize("bad", [-1, 1.5, True, "7"])
def test_a_train_seed_that_is_not_a_non_negative_integer_is_refused(bad):
    with pytest.raises(ValueError, match="train_seed must be an integer >= 0"):
        DeepJSCCScheme(train_seed=bad)
    with pytest.raises(ValueError, match="train_seed must be an integer >= 0"):
        classifier_train_seed({"train_seed": bad})


def test_the_classifier_is_keyed_by_its_train_seed_not_the_scenario_seed(shipped_store):
    common = dict(dataset_spec={"name": "embedded", "params": {}, "train_size": None}, image_shape=(28, 28, 1),
                  num_classes=10)
    default = classifier_spec(**common)
    assert default == classifier_spec(**common, seed=1234) == classifier_spec(**common, config={"train_seed": 1234})
    assert shipped_store.find("classifier", default) is not None       # the shipped classifier keeps its key
    other = classifier_spec(**common, config={"train_seed": 5})
    assert other["seed"] == 5 and spec_key(other) != spec_key(default)
    assert "train_seed" not in other["training"]
    with pytest.raises(ValueError, match="given twice"):
        classifier_spec(**common, seed=3, config={"train_seed": 5})


def test_the_semantic_loss_uses_the_classifier_of_the_task_whatever_the_scenario_seed():
    from linksim.losses import classifier_request
    from linksim.schemes.base import SchemeContext
    from linksim.channels import AWGNChannel

    def request(seed, task):
        ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=98, train_images=np.zeros((20, 28, 28, 1)),
                            channel=AWGNChannel(), seed=seed, dataset_spec={"name": "embedded"},
                            extra={"train_labels": np.arange(20) % 10, "task": task})
        return classifier_request(ctx)

    assert request(7, {})["seed"] == request(1234, {})["seed"] == DEFAULT_TRAIN_SEED
    assert request(7, {"classifier": {"train_seed": 9}})["seed"] == 9


def test_the_training_facts_say_how_long_a_model_trained_and_on_what():
    history = {"epoch_seconds": [1.25, 2.0, 0.5], "train_steps": 30, "n_train": 270}
    facts = training_facts(history, 5)
    assert facts["train_seconds"] == pytest.approx(3.8, abs=0.05) and facts["train_steps"] == 30
    assert facts["train_images"] == 270 and facts["train_seed"] == 5
    assert facts["tensorflow"] and facts["machine"]["device"].split(":")[0] in ("CPU", "GPU")
    assert facts["machine"]["cpu_count"] >= 1
    # an old history (before these facts): no time rather than a wrong one
    assert training_facts({}, 1234)["train_seconds"] is None


def test_a_trained_stage_card_has_its_training_facts(tmp_path):
    from linksim.channels import AWGNChannel
    from linksim.data import get_dataset
    from linksim.data.base import to_float
    from linksim.schemes.base import SchemeContext

    x, _ = get_dataset("embedded").load("train", 200, seed=0)
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=64, train_images=to_float(x), channel=AWGNChannel(),
                        seed=7, dataset_spec={"name": "embedded", "params": {}, "train_size": 200},
                        store=ModelStore([tmp_path]), progress=False)
    s = DeepJSCCScheme(filters=[4, 4, 4, 4], epochs=2, steps_per_epoch=3, batch_size=16, train_seed=11)
    s.prepare(ctx)
    card = s.entry.card()
    assert card["spec"]["seed"] == 11 and card["train_seed"] == 11 and card["seed"] == 11
    assert card["train_steps"] == 6 and card["train_images"] == 180      # 200 - 10 % validation
    assert card["train_seconds"] > 0 and card["tensorflow"] and "device" in card["machine"]
