"""JSCC schemes composed of an architecture and training stages: registries, presets, store keys."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from linksim.channels import AWGNChannel
from linksim.losses import JSCCLoss, MSELoss, SDJSCCSemanticLoss, images_of
from linksim.registry import ARCHITECTURES, LOSSES, SCHEMES
from linksim.scenario import load_scenario
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCC, DeepJSCCArchitecture, DeepJSCCScheme
from linksim.schemes.jscc import JSCCScheme, TrainingStage, WeightedLoss
from linksim.schemes.sdjscc import SDJSCCNoGSWScheme, SDJSCCScheme
from linksim.store import SHIPPED_DIR, ModelStore

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
#: every registered scheme that is a JSCC scheme (presets included)
JSCC_TYPES = tuple(n for n in SCHEMES.names() if issubclass(SCHEMES.get(n), JSCCScheme))


# ------------------------------------------------------------ a loss registered from outside linksim
@LOSSES.register("test_l1")
class L1Loss(JSCCLoss):
    """Mean absolute pixel error (registered by this test module: one file, nothing else)."""

    label = "l1"

    def __init__(self, scale: float = 1.0):
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (got {scale!r})")
        self.scale = float(scale)
        self.prepared = False

    def prepare(self, context, *, val_fraction):
        self.prepared = True

    def __call__(self, x, out):
        return self.scale * tf.reduce_mean(tf.abs(x - images_of(out)))

    def get_config(self):
        return {"scale": self.scale}


@pytest.fixture(scope="module")
def images():
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    x, _ = get_dataset("embedded").load("train", 300, seed=0)
    return to_float(x)


def _context(x, store, k=64, **kw):
    return SchemeContext(image_shape=(28, 28, 1), channel_uses=k, train_images=x, channel=AWGNChannel(), seed=0,
                         dataset_spec={"name": "embedded", "params": {}, "train_size": 300}, store=store,
                         progress=False, **kw)


TINY = dict(snr_train_db=10.0, batch_size=32, label="tiny")


def test_a_loss_registered_in_another_module_trains_a_tiny_model_in_a_stage(images, tmp_path):
    s = JSCCScheme(architecture={"type": "deepjscc", "filters": [4, 4, 4, 4]},
                   stages=[{"losses": [{"type": "mse"}], "epochs": 1, "steps_per_epoch": 3},
                           {"name": "l1_tuned", "losses": [{"type": "test_l1", "scale": 2.0, "weight": 0.5},
                                                           {"type": "mse", "weight": 1.0, "ramp_epochs": 2}],
                            "epochs": 2, "steps_per_epoch": 3}], **TINY)
    s.prepare(_context(images, ModelStore([tmp_path])))
    assert s.stages[1].losses[0].prepared                            # the prepare hook ran before stage 2
    assert s.entry.path.name.startswith("l1_tuned-") and s.stage_entries[0].path.name.startswith("deepjscc-")
    spec = s.store_spec(_context(images, None))
    assert spec["finetune"]["loss"] == [{"loss": "l1", "weight": 0.5},
                                        {"loss": "mse", "weight": 1.0, "ramp_epochs": 2}]
    assert s.entry.card()["epochs_run"] == 2
    # TensorBoard logs of every stage stay in its store folder; the checkpoints are gone once it is saved
    for entry in (s.stage_entries[0], s.entry):
        assert any(entry.log_dir.glob("events.out.tfevents.*")) and not entry.checkpoint_dir.exists()
    res = s.evaluate(s.encode(images[:4]), 10.0)
    assert res.images.shape == (4, 28, 28, 1) and np.isfinite(res.images).all()


def test_a_ramped_weight_grows_linearly_over_its_epochs():
    w = WeightedLoss([(MSELoss(), 2.0, 4), (MSELoss(), 1.0, 0)])
    got = []
    for epoch in range(6):
        w.set_epoch(epoch)
        got.append([float(v.numpy()) for v in w.weights])
    assert got == [[0.5, 1.0], [1.0, 1.0], [1.5, 1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 1.0]]
    x = tf.zeros((2, 4, 4, 1))
    out = {"images": tf.fill((2, 4, 4, 1), 0.5)}                      # a dict output: images_of reads it
    assert float(w(x, out)) == pytest.approx(3.0 * 0.25)


def test_the_generic_form_of_deepjscc_is_the_same_model_and_store_key(images):
    ctx = _context(images, None)
    flat = DeepJSCCScheme(snr_train_db=5, quantizer="binary", epochs=20, steps_per_epoch=7)
    generic = SCHEMES.create("jscc", architecture={"type": "deepjscc", "quantizer": "binary"}, snr_train_db=5,
                             stages=[{"losses": [{"type": "mse", "weight": 1}], "epochs": 20,
                                      "steps_per_epoch": 7}])
    assert generic.store_spec(ctx) == flat.store_spec(ctx)
    assert generic.store_name() == flat.store_name() == "deepjscc"
    a, b = flat.build_model(ctx), generic.build_model(ctx)
    assert {**a.get_config(), "name": ""} == {**b.get_config(), "name": ""}
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_the_generic_form_of_sdjscc_is_the_same_store_key():
    labels = np.arange(300) % 10
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=98, train_images=np.zeros((300, 28, 28, 1)),
                        channel=AWGNChannel(), seed=3, dataset_spec={"name": "embedded"},
                        extra={"train_labels": labels, "task": {}, "num_classes": 10})
    flat = SDJSCCScheme(snr_train_db=5, epochs=20, finetune_epochs=5, finetune_steps_per_epoch=40, tau=1e4)
    generic = JSCCScheme(architecture={"type": "deepjscc", "quantizer": "binary"}, snr_train_db=5,
                         stages=[{"losses": [{"type": "mse"}], "epochs": 20},
                                 {"name": "sdjscc", "losses": [{"type": "semantic", "tau": 1e4}], "epochs": 5,
                                  "steps_per_epoch": 40, "learning_rate": 1e-5}])
    assert generic.store_spec(ctx) == flat.store_spec(ctx)
    nogsw = JSCCScheme(architecture={"type": "deepjscc", "quantizer": "binary"}, snr_train_db=5,
                       stages=[{"losses": [{"type": "mse"}], "epochs": 20},
                               {"name": "sdjscc_nogsw", "losses": [{"type": "semantic", "gsw": False}],
                                "epochs": 5, "steps_per_epoch": 40, "learning_rate": 1e-5}])
    flat_nogsw = SDJSCCNoGSWScheme(snr_train_db=5, epochs=20, finetune_epochs=5, finetune_steps_per_epoch=40)
    assert nogsw.store_spec(ctx) == flat_nogsw.store_spec(ctx)


def test_unknown_names_and_options_are_explained_with_the_allowed_values():
    with pytest.raises(KeyError, match="registered architectures: deepjscc"):
        JSCCScheme(architecture={"type": "resnet"}, stages=[{"losses": [{"type": "mse"}]}])
    with pytest.raises(KeyError, match=r"registered loss\w*: .*mse.*semantic"):
        JSCCScheme(architecture={"type": "deepjscc"}, stages=[{"losses": [{"type": "hinge"}]}])
    with pytest.raises(ValueError, match=r"architecture 'deepjscc' has no option\(s\) depth \(allowed: filters, "
                                         r"kernel_size, quantizer, snr_side_info\)"):
        JSCCScheme(architecture={"type": "deepjscc", "depth": 3}, stages=[{"losses": [{"type": "mse"}]}])
    with pytest.raises(ValueError, match=r"loss 'semantic' has no option\(s\) layer \(allowed: feature_layer"):
        JSCCScheme(architecture={"type": "deepjscc"}, stages=[{"losses": [{"type": "semantic", "layer": "x"}]}])
    with pytest.raises(ValueError, match=r"stage 1 has no option\(s\) lr \(allowed: losses, epochs, "
                                         r"learning_rate, steps_per_epoch, name\)"):
        JSCCScheme(architecture={"type": "deepjscc"}, stages=[{"losses": [{"type": "mse"}], "lr": 1}])
    with pytest.raises(ValueError, match=r"scheme 'deepjscc' has no option\(s\) lr \(allowed: snr_train_db, "):
        DeepJSCCScheme(lr=1e-3)
    with pytest.raises(ValueError, match="quantizer must be one of null, binary, onoff"):
        DeepJSCCArchitecture(quantizer="ternary")
    assert DeepJSCCArchitecture(quantizer="onoff").latent_bits_per_image(49) == 98
    with pytest.raises(ValueError, match="train_channel must be one of awgn, scenario"):
        DeepJSCCScheme(train_channel="fading")
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        TrainingStage(losses=[{"type": "mse", "weight": -1}])
    with pytest.raises(ValueError, match="non-empty list"):
        JSCCScheme(architecture={"type": "deepjscc"}, stages=[])
    assert SCHEMES.options("deepjscc")[:2] == ["snr_train_db", "batch_size"]   # one derived list


def test_architecture_losses_and_stages_round_trip_their_configs():
    arch = ARCHITECTURES.create("deepjscc", filters=[4, 8, 8, 8], kernel_size=3, quantizer="binary")
    again = DeepJSCCArchitecture.from_config(arch.get_config())
    assert again.get_config() == arch.get_config()
    for name, opts in (("mse", {}), ("semantic", {"tau": 10.0, "feature_layer": "conv3", "mse_weight": 0.1})):
        loss = LOSSES.create(name, **opts)
        assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()
    semantic = SDJSCCSemanticLoss(gsw=False)
    assert SDJSCCSemanticLoss.from_config(semantic.get_config()).get_config() == semantic.get_config()
    st = TrainingStage(losses=[{"type": "mse", "weight": 0.5, "ramp_epochs": 2}], epochs=3, name="x")
    assert TrainingStage(**st.get_config()).get_config() == st.get_config()
    labels = np.arange(40) % 10
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=98, train_images=np.zeros((40, 28, 28, 1)),
                        channel=AWGNChannel(), seed=3, dataset_spec={"name": "embedded"},
                        extra={"train_labels": labels, "task": {}, "num_classes": 10})
    for scheme in (DeepJSCCScheme(epochs=3, filters=[4, 4, 4, 4]), SDJSCCScheme(tau=10.0, mse_weight=0.5),
                   SDJSCCNoGSWScheme(finetune_learning_rate=1e-4)):
        generic = JSCCScheme(**scheme.get_config())
        assert generic.get_config() == scheme.get_config()
        assert generic.store_spec(ctx) == scheme.store_spec(ctx)
    model = arch.build((28, 28, 1), 64)
    assert isinstance(model, DeepJSCC)
    assert DeepJSCC.from_config(model.get_config()).get_config() == model.get_config()


def _scenario_contexts():
    """(scenario, index, scheme options, context) of every JSCC scheme of the shipped non-CIFAR scenarios."""
    from linksim.data import get_dataset
    from linksim.data.base import to_float
    from linksim.run.setup import channel_uses_list, make_chains

    out = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        if "cifar10" in path.name:
            continue
        scen = load_scenario(path)
        jscc = [(i, dict(s)) for i, s in enumerate(scen.schemes) if s["type"] in JSCC_TYPES]
        if not jscc:
            continue
        ds_spec = scen.data["dataset"]
        ds = get_dataset(ds_spec["name"], **ds_spec.get("params", {}))
        x_test, y_test = ds.load("test", ds_spec["test_size"], seed=scen.seed)
        x_train, y_train = ds.load("train", ds_spec.get("train_size"), seed=scen.seed)
        x_train = to_float(x_train)
        image_shape = tuple(int(s) for s in x_test.shape[1:])
        num_classes = None if y_train is None else int(max(np.max(y_train), np.max(y_test)) + 1)
        for chain in make_chains(scen):  # a channel sweep: every chain (train_channel: scenario differs per chain)
            for k in channel_uses_list(scen.data["rate"], image_shape):
                ctx = SchemeContext(image_shape=image_shape, channel_uses=k, train_images=x_train,
                                    channel=chain.channel, seed=scen.seed,
                                    dataset_spec={"name": ds_spec["name"], "params": ds_spec.get("params", {}),
                                                  "train_size": ds_spec.get("train_size")},
                                    extra={"train_labels": y_train, "task": scen.data.get("task", {}),
                                           "num_classes": num_classes})
                for i, opts in jscc:
                    out.append((path.name, i, opts, ctx))
    return out


def test_every_shipped_scenario_finds_every_stage_of_its_jscc_schemes_in_the_shipped_store():
    store = ModelStore([SHIPPED_DIR])
    checked = 0
    for name, i, opts, ctx in _scenario_contexts():
        opts = dict(opts)
        scheme = SCHEMES.create(opts.pop("type"), **opts)
        for stage in range(len(scheme.stages)):
            spec = scheme.stage_spec(ctx, stage)
            assert store.find(scheme.stage_name(stage), spec) is not None, \
                (name, i, stage, scheme.stage_name(stage))
            checked += 1
    assert checked >= 20


def test_every_shipped_model_serves_a_shipped_scenario():
    # no stale weights: a model no scenario needs only makes the repository bigger
    store = ModelStore([SHIPPED_DIR])
    used = set()
    for name, i, opts, ctx in _scenario_contexts():
        opts = dict(opts)
        scheme = SCHEMES.create(opts.pop("type"), **opts)
        for stage in range(len(scheme.stages)):
            used.add(store.find(scheme.stage_name(stage), scheme.stage_spec(ctx, stage)).path.name)
    # the task networks (classifier, hash networks: tests/unit/test_hashing.py) serve the tasks, not JSCC stages
    jscc = {p.name for p in SHIPPED_DIR.iterdir()
            if (p / "card.json").exists() and not p.name.startswith(("classifier", "hashnet"))}
    assert jscc <= used, sorted(jscc - used)


def test_sdjscc_with_onoff_keying_fine_tunes_the_onoff_deepjscc():
    """quantizer: onoff (the paper's Algorithm 1) reaches stage 1, whose key is the onoff DeepJSCC's."""
    labels = np.arange(300) % 10
    ctx = SchemeContext(image_shape=(28, 28, 1), channel_uses=49, train_images=np.zeros((300, 28, 28, 1)),
                        channel=AWGNChannel(), seed=3, dataset_spec={"name": "embedded"},
                        extra={"train_labels": labels, "task": {}, "num_classes": 10})
    sd = SDJSCCScheme(snr_train_db=20, epochs=20, quantizer="onoff")
    spec = sd.store_spec(ctx)
    assert spec["stage1"]["model"]["quantizer"] == "onoff"
    assert spec["stage1"] == DeepJSCCScheme(snr_train_db=20, epochs=20, quantizer="onoff").store_spec(ctx)
    assert spec != SDJSCCScheme(snr_train_db=20, epochs=20).store_spec(ctx)
