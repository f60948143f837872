"""linksim.training: the one training loop (fit) and the JSCC trainer on top of it."""

import json

import keras
import numpy as np
import pytest
import sionna.phy
import tensorflow as tf

from linksim.schemes.deepjscc import DeepJSCC
from linksim.training import TrainConfig, fit, mse_loss, seed_epoch, train_jscc


@pytest.fixture(scope="module")
def images():
    from linksim.data import get_dataset
    from linksim.data.base import to_float

    x, _ = get_dataset("embedded").load("train", 400, seed=0)
    return to_float(x)


def _tiny_jscc(seed):
    keras.utils.set_random_seed(seed)
    return DeepJSCC((28, 28, 1), 64, filters=[4, 4, 4, 4])


class _Interrupt(Exception):
    pass


# --------------------------------------------------------------- learning at all
def test_the_training_loss_decreases_on_a_tiny_model_with_a_fixed_seed(images):
    # 360 training images, 10 steps of 32 per epoch, 3 epochs, 10 dB
    keras.utils.set_random_seed(0)
    model = DeepJSCC((28, 28, 1), 64, filters=[8, 8, 8, 8])
    hist = train_jscc(model, images, TrainConfig(epochs=3, batch_size=32, learning_rate=1e-2, seed=0,
                                                 steps_per_epoch=10, patience=10), progress=False)
    assert hist["epochs_run"] == 3 and len(hist["val_psnr_db"]) == 3
    assert hist["loss"][-1] < 0.9 * hist["loss"][0], hist["loss"]
    assert hist["val_loss"][-1] < hist["val_loss"][0], hist["val_loss"]


# ---------------------------------------------------------------------- resume
def test_an_interrupted_training_resumed_from_its_folder_ends_with_the_weights_of_an_uninterrupted_one(
        tmp_path, images):
    # same seed, same initial weights; noise, batch order and SNR are functions of (seed, epoch).
    # 12 steps per epoch: two Keras executions of 6 steps each (steps_per_execution must not cross epochs).
    # Tolerance: 1e-5 absolute on every weight (multi-threaded CPU reductions may reorder sums).
    cfg = TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3, seed=5, steps_per_epoch=12, patience=10,
                      snr_train_db=[0.0, 20.0])
    whole = _tiny_jscc(1)
    hist_whole = train_jscc(whole, images, cfg, progress=False)

    def stop_after_epoch_1(epoch, logs):
        if epoch == 1:
            raise _Interrupt

    first = _tiny_jscc(1)
    with pytest.raises(_Interrupt):
        train_jscc(first, images, cfg, checkpoint_dir=tmp_path, progress=False, callbacks=[stop_after_epoch_1])
    sionna.phy.config.tf_rng.reset_from_seed(12345)  # whatever the process did in between must not matter
    resumed = _tiny_jscc(77)  # different initial weights: everything must come from the checkpoint
    epochs_seen = []
    hist = train_jscc(resumed, images, cfg, checkpoint_dir=tmp_path, progress=False,
                      callbacks=[lambda e, logs: epochs_seen.append(e)])
    assert epochs_seen == [2, 3]
    assert hist["epoch"] == [1, 2, 3] and hist["best_epoch"] == hist_whole["best_epoch"]
    # the cost facts of the cards count the interrupted run too: 3 epochs of 11 steps (360 images // 32)
    assert hist["train_steps"] == hist_whole["train_steps"] == 33 and len(hist["epoch_seconds"]) == 3
    np.testing.assert_allclose(hist["val_loss"], hist_whole["val_loss"], rtol=1e-5)
    for a, b in zip(resumed.weights, whole.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


def test_the_channel_noise_of_an_epoch_depends_only_on_the_seed_and_the_epoch():
    seed_epoch(3, 2)
    a = sionna.phy.config.tf_rng.normal([4]).numpy()
    sionna.phy.config.tf_rng.normal([100])
    seed_epoch(3, 2)
    np.testing.assert_array_equal(sionna.phy.config.tf_rng.normal([4]).numpy(), a)
    seed_epoch(3, 3)
    assert not np.array_equal(sionna.phy.config.tf_rng.normal([4]).numpy(), a)


# ------------------------------------------------------- schedule and stopping
class OneWeight(keras.Model):
    def __init__(self):
        super().__init__()
        self.w = self.add_weight(shape=(), initializer="zeros", name="w")
        self.built = True


def _plateau_run(val_losses, *, patience, lr_patience, min_lr=0.0, epochs=20, checkpoint_dir=None):
    """fit on a model whose validation loss follows ``val_losses`` (epoch by epoch), a constructed plateau."""
    model = OneWeight()
    opt = keras.optimizers.Adam(learning_rate=1e-3)
    opt.build(model.trainable_variables)
    epoch_seen = tf.Variable(0)
    val_table = tf.constant(val_losses, tf.float32)

    def train_step(x):
        epoch_seen.assign_add(1)
        model.w.assign(tf.cast(epoch_seen, tf.float32))  # the weight records the epoch that produced it
        return {"loss": tf.constant(1.0)}

    def val_step(x):
        return {"loss": tf.gather(val_table, tf.maximum(epoch_seen - 1, 0))}

    hist = fit(model, opt, train_step=train_step, epoch_batches=lambda e: (np.zeros([1, 2], np.float32),),
               n_batches=1, val_step=val_step, val_data=(np.zeros([2], np.float32),), epochs=epochs, seed=0,
               patience=patience, lr_patience=lr_patience, min_lr=min_lr, checkpoint_dir=checkpoint_dir,
               progress=False)
    return model, hist


def test_a_plateau_halves_the_learning_rate_after_lr_patience_epochs_then_stops_early():
    # best at epoch 2, then flat: lr halves after epochs 4 and 6, training stops after epoch 2 + 5
    model, hist = _plateau_run([1.0, 0.5] + [0.7] * 18, patience=5, lr_patience=2)
    assert hist["epoch"] == [1, 2, 3, 4, 5, 6, 7] and hist["stopped_early"] and hist["best_epoch"] == 2
    np.testing.assert_allclose(hist["lr"], [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4], rtol=1e-6)
    assert float(model.w.numpy()) == 2.0  # the best epoch's weights are restored


def test_the_learning_rate_never_drops_below_its_floor():
    _, hist = _plateau_run([1.0] + [2.0] * 9, patience=9, lr_patience=1, min_lr=1e-3 / 4, epochs=10)
    np.testing.assert_allclose(hist["lr"], [1e-3, 1e-3, 5e-4] + [2.5e-4] * 7, rtol=1e-6)


def test_a_run_that_stopped_early_does_not_train_again_when_called_with_its_folder(tmp_path):
    _, first = _plateau_run([1.0] + [2.0] * 19, patience=3, lr_patience=None, checkpoint_dir=tmp_path)
    assert first["epochs_run"] == 4 and first["stopped_early"]
    _, again = _plateau_run([1.0] + [2.0] * 19, patience=3, lr_patience=None, checkpoint_dir=tmp_path)
    assert again["epoch"] == [1, 2, 3, 4] and again["stopped_early"]


def test_an_unknown_monitor_mode_lists_the_allowed_ones():
    model = OneWeight()
    with pytest.raises(ValueError, match="'min' or 'max'"):
        fit(model, keras.optimizers.Adam(), train_step=None, epoch_batches=None, n_batches=1, val_step=None,
            val_data=(np.zeros(2),), epochs=1, seed=0, patience=1, mode="best")


def test_train_jscc_halves_its_rate_down_to_one_64th_of_the_initial_rate(images):
    # a learning rate of 1e-9 at 100 dB freezes the model: the validation loss is flat (a constructed plateau)
    model = _tiny_jscc(2)
    cfg = TrainConfig(epochs=9, batch_size=32, learning_rate=1e-9, seed=0, steps_per_epoch=1, patience=20, snr_train_db=100.0,
                      lr_patience=1)
    hist = train_jscc(model, images, cfg, progress=False)
    assert min(hist["lr"]) >= 1e-9 / 64 * (1 - 1e-6)
    assert hist["lr"][-1] == pytest.approx(1e-9 / 64, rel=1e-6)


# ---------------------------------------------------------- dict model outputs
class DictOutputModel(keras.Model):
    """images -> {"images", "symbols"}: a 1x1 convolution as 'encoder', identity plus noise-free decoder."""

    def __init__(self):
        super().__init__()
        self.enc = keras.layers.Conv2D(1, 1, kernel_initializer="ones")
        self.dec = keras.layers.Conv2D(1, 1, kernel_initializer="ones")
        self(tf.zeros([1, 28, 28, 1]), tf.constant(10.0))

    def call(self, images, snr_db, training=False):
        symbols = self.enc(images)
        return {"images": self.dec(symbols), "symbols": symbols, "num_symbols": tf.fill([tf.shape(images)[0]], 784)}


def test_a_model_with_named_outputs_trains_with_a_loss_that_uses_another_output(images):
    # the loss adds the symbols' mean energy: training must shrink it; PSNR is measured on out["images"]
    def loss_with_rate(x, out):
        assert isinstance(out, dict) and set(out) == {"images", "symbols", "num_symbols"}
        return mse_loss(x, out) + 1.0 * tf.reduce_mean(tf.square(out["symbols"]))

    keras.utils.set_random_seed(0)
    model = DictOutputModel()
    energy_before = float(tf.reduce_mean(tf.square(model(tf.constant(images[:64]), tf.constant(10.0))["symbols"])))
    hist = train_jscc(model, images, TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2, seed=0, patience=5),
                      loss_fn=loss_with_rate, progress=False)
    energy_after = float(tf.reduce_mean(tf.square(model(tf.constant(images[:64]), tf.constant(10.0))["symbols"])))
    assert energy_after < 0.5 * energy_before, (energy_before, energy_after)
    assert len(hist["val_psnr_db"]) == 2 and np.isfinite(hist["val_psnr_db"]).all()


# ------------------------------------------------------------------- logging
def test_tensorboard_logs_are_written_only_when_a_log_folder_is_given(tmp_path, images):
    cfg = TrainConfig(epochs=1, batch_size=32, seed=0, steps_per_epoch=1)
    train_jscc(_tiny_jscc(3), images, cfg, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
    hist = train_jscc(_tiny_jscc(3), images, cfg, progress=False, log_dir=tmp_path / "logs")
    assert list((tmp_path / "logs").glob("events.out.tfevents.*")) and hist["epochs_run"] == 1


def test_the_history_file_beside_the_checkpoint_matches_the_returned_history(tmp_path, images):
    cfg = TrainConfig(epochs=2, batch_size=32, seed=0, steps_per_epoch=2)
    hist = train_jscc(_tiny_jscc(4), images, cfg, checkpoint_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["epoch"] == hist["epoch"] and saved["val_psnr_db"] == hist["val_psnr_db"]


# ------------------------------------------------------------------- training SNRs
class SNRSpy(keras.Model):
    """A 1x1 convolution that records every SNR tensor it is called with (eagerly, run_eagerly below)."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(1, 1)
        self.seen = []
        self(tf.zeros([1, 28, 28, 1]), tf.constant(10.0))

    def call(self, images, snr_db, training=False):
        self.seen.append((bool(training), np.asarray(snr_db)))
        return self.conv(images)


def test_a_training_snr_range_gives_every_image_its_own_snr_and_validates_across_the_range(images):
    tf.config.run_functions_eagerly(True)
    try:
        model = SNRSpy()
        model.seen.clear()
        train_jscc(model, images, TrainConfig(epochs=1, batch_size=32, snr_train_db=[0.0, 20.0], seed=0,
                                              steps_per_epoch=3), progress=False)
    finally:
        tf.config.run_functions_eagerly(False)
    train = [s for t, s in model.seen if t]
    val = np.concatenate([np.atleast_1d(s) for t, s in model.seen if not t and s.ndim == 1])
    assert train and all(s.shape == (32,) and 0 <= s.min() and s.max() <= 20 and s.std() > 2 for s in train)
    # the validation images' SNRs are evenly spread over the range (40 images: 0.25, 0.75, ..., 19.75 dB)
    np.testing.assert_allclose(np.sort(np.unique(val)), 0.25 + 0.5 * np.arange(40), atol=1e-5)


def test_a_single_training_snr_is_one_value_per_batch(images):
    tf.config.run_functions_eagerly(True)
    try:
        model = SNRSpy()
        model.seen.clear()
        train_jscc(model, images, TrainConfig(epochs=1, batch_size=32, snr_train_db=7.0, seed=0, steps_per_epoch=2),
                   progress=False)
    finally:
        tf.config.run_functions_eagerly(False)
    assert model.seen and all(s.ndim == 0 and float(s) == 7.0 for _, s in model.seen)


# ------------------------------------------------------ a damaged checkpoint
def _damage(folder, which):
    """Damage one file of a finished epoch's checkpoint the way a full disk or a killed copy would."""
    from pathlib import Path

    folder = Path(folder)
    if which == "data":
        f = next(folder.glob("ckpt-*.data-*"))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif which == "index":
        next(folder.glob("ckpt-*.index")).write_bytes(b"\x00garbage" * 10)
    elif which == "history":
        (folder / "history.json").write_text('{"epoch": [1], "loss": [0.1')
    elif which == "best":
        (folder / "best.weights.h5").write_bytes(b"not an hdf5 file")


@pytest.mark.parametrize("which", ["data", "index", "history", "best"])
def test_a_damaged_checkpoint_is_set_aside_with_a_warning_and_training_starts_again(tmp_path, images, which):
    cfg = TrainConfig(epochs=2, batch_size=32, learning_rate=3e-3, seed=5, steps_per_epoch=4, patience=10)

    def stop_after_epoch_1(epoch, logs):
        if epoch == 1:
            raise _Interrupt

    ckpt = tmp_path / "checkpoint"
    with pytest.raises(_Interrupt):
        train_jscc(_tiny_jscc(1), images, cfg, checkpoint_dir=ckpt, progress=False, callbacks=[stop_after_epoch_1])
    _damage(ckpt, which)
    damaged = sorted(p.name for p in ckpt.iterdir())
    epochs_seen = []
    with pytest.warns(UserWarning, match=r"checkpoint in .*checkpoint is damaged .*moved to .*starts again"):
        hist = train_jscc(_tiny_jscc(1), images, cfg, checkpoint_dir=ckpt, progress=False,
                          callbacks=[lambda e, logs: epochs_seen.append(e)])
    assert epochs_seen == [1, 2] and hist["epoch"] == [1, 2]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("checkpoint.damaged-")]
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == damaged  # kept, not deleted
    # the restarted run equals a run that never had a checkpoint (1e-5: CPU reduction order)
    whole = _tiny_jscc(1)
    hist_whole = train_jscc(whole, images, cfg, progress=False)
    np.testing.assert_allclose(hist["val_loss"], hist_whole["val_loss"], rtol=1e-5)
