"""Metrics: pixel fidelity (PSNR, SSIM, MS-SSIM), perceptual (LPIPS) and link quality (BER, BLER, bpp, channel uses).

Every metric is registered in :data:`linksim.registry.METRICS` under the name a
scenario's ``metrics:`` list uses.  Image metrics compare the transmitted and the
received images per image; the results table holds the mean over the test images.
Link metrics are counted by the scheme while it transmits (bit and block errors,
bits sent, channel uses) and are only reported for schemes that have them
(``ber`` is empty for an analog JSCC scheme).

Conventions
-----------
- Images are float32 in [0, 1]; PSNR uses a peak of 1 and caps the per-image value
  at :data:`PSNR_CAP_DB` (a bit-exact reconstruction has MSE 0).
- PSNR in the table is the mean of per-image PSNR (the DeepJSCC literature's
  convention), not the PSNR of the mean MSE.
- SSIM uses a Gaussian window of ``min(11, H, W)`` pixels (sigma 1.5), on the
  luminance-free image as given (per channel, averaged).  MS-SSIM uses as many of
  the standard five scales as the image size allows (a scale needs at least the
  filter size in pixels); with fewer than two scales it is reported as NaN.
- LPIPS v0.1 (``lpips``: AlexNet, weights shipped; ``lpips_vgg``: VGG16, weights
  converted by the user) is :mod:`linksim.lpips`: lower is better; images whose
  shorter side is below 64 px are upsampled bilinearly to 64, grey is repeated to
  three channels (``docs/lpips.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from linksim.lpips import lpips_distance  # also registers the LPIPS layer for serialisation
from linksim.registry import METRICS

__all__ = ["PSNR_CAP_DB", "Metric", "psnr", "ssim", "ms_ssim", "lpips_alexnet", "lpips_vgg16", "image_metric_names",
           "column_of"]

PSNR_CAP_DB = 100.0
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as4d(x) -> tf.Tensor:
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank == 3:
        x = x[tf.newaxis]
    return x


def psnr(x, x_hat) -> np.ndarray:
    """Per-image PSNR in dB with peak 1.

    Input
    -----
    x, x_hat : [batch, H, W, C], float32 in [0, 1]

    Output
    ------
    [batch], float64: capped at :data:`PSNR_CAP_DB`.
    """
    x, x_hat = _as4d(x), _as4d(x_hat)
    mse = tf.reduce_mean(tf.square(x - x_hat), axis=[1, 2, 3]).numpy().astype(np.float64)
    with np.errstate(divide="ignore"):
        out = -10.0 * np.log10(np.maximum(mse, 10 ** (-PSNR_CAP_DB / 10)))
    return out


def _filter_size(h: int, w: int) -> int:
    return int(min(11, h, w))


def ssim(x, x_hat) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) with a Gaussian window of ``min(11, H, W)``.

    Input
    -----
    x, x_hat : [batch, H, W, C], float32 in [0, 1]

    Output
    ------
    [batch], float64
    """
    x, x_hat = _as4d(x), _as4d(x_hat)
    fs = _filter_size(int(x.shape[1]), int(x.shape[2]))
    return tf.image.ssim(x, x_hat, max_val=1.0, filter_size=fs, filter_sigma=1.5).numpy().astype(np.float64)


def ms_ssim_scales(h: int, w: int) -> int:
    """How many of the five MS-SSIM scales an image of ``h x w`` supports."""
    fs = _filter_size(h, w)
    scales = 0
    while scales < 5 and min(h, w) / (2 ** scales) >= fs:
        scales += 1
    return scales


def ms_ssim(x, x_hat) -> np.ndarray:
    """Per-image MS-SSIM over as many scales as the image size allows (NaN if < 2).

    Input
    -----
    x, x_hat : [batch, H, W, C], float32 in [0, 1]

    Output
    ------
    [batch], float64
    """
    x, x_hat = _as4d(x), _as4d(x_hat)
    h, w = int(x.shape[1]), int(x.shape[2])
    n = ms_ssim_scales(h, w)
    if n < 2:
        return np.full(int(x.shape[0]), np.nan)
    weights = np.asarray(_MS_SSIM_WEIGHTS[:n])
    weights = (weights / weights.sum()).tolist()
    fs = min(_filter_size(h, w), int(min(h, w) // 2 ** (n - 1)))
    return tf.image.ssim_multiscale(x, x_hat, max_val=1.0, power_factors=weights,
                                    filter_size=fs, filter_sigma=1.5).numpy().astype(np.float64)


@dataclass(frozen=True)
class Metric:
    """A registered metric: its results-table column and how it is obtained.

    ``kind`` is ``"image"`` (computed from transmitted and received images by
    ``fn``), ``"link"`` (counted by the scheme while it transmits; the scheme
    reports the column directly) or ``"task"`` (the downstream classifier's
    predictions on the received images against the true labels, over the whole
    test set; :mod:`linksim.tasks`).  A task metric names the registered task
    (:data:`linksim.registry.TASKS`) that computes it in ``task``.
    """

    name: str
    column: str
    kind: str
    description: str
    fn: object = None
    task: str | None = None
    #: Called (no arguments) before a run evaluates anything; raises when the metric
    #: cannot be computed here (e.g. LPIPS weights missing), so a run fails at once.
    check: object = None

    def ensure_available(self) -> None:
        """Raise now (a user error naming the fix) if this metric cannot be computed here."""
        if self.check is not None:
            self.check()

    def __call__(self, x, x_hat):
        if self.fn is None:
            raise TypeError(f"metric '{self.name}' is counted by the scheme, not computed from images")
        return self.fn(x, x_hat)


def register_metric(metric: Metric) -> Metric:
    """Register ``metric`` in :data:`linksim.registry.METRICS` under ``metric.name``.

    A plug-in adds a metric this way::

        from linksim.metrics import Metric, register_metric
        register_metric(Metric("mae", "mae", "image", "Mean absolute error.", my_mae))

    Raises
    ------
    ValueError
        ``kind`` is not image, link or task; a task metric names no task; or the name is taken.
    """
    if metric.kind not in ("image", "link", "task"):
        raise ValueError(f"metric '{metric.name}': kind must be one of image, link, task (got {metric.kind!r})")
    if metric.kind == "task" and not metric.task:
        raise ValueError(f"metric '{metric.name}': a task metric names the task that computes it (task=...)")
    _register(metric)
    return metric


def _register(metric: Metric) -> None:
    # the registry describes entries by docstring; give each instance one
    holder = type(metric.name, (), {"__doc__": metric.description, "metric": metric})
    METRICS.register(metric.name)(holder)


def _lpips_of(net: str, doc: str):
    """The per-image LPIPS metric function of backbone ``net`` (:func:`linksim.lpips.lpips_distance`)."""
    def metric(x, x_hat) -> np.ndarray:
        return lpips_distance(x, x_hat, net=net)

    metric.__doc__ = doc + """

    Input
    -----
    x, x_hat : [batch, H, W, C], float32 in [0, 1], C = 1 or 3

    Output
    ------
    [batch], float64

    Raises
    ------
    linksim.lpips_weights.LPIPSWeightsError
        The backbone's weights are missing (the message gives the commands that make them).
    """
    return metric


lpips_alexnet = _lpips_of("alexnet", "Per-image LPIPS v0.1 with AlexNet (weights shipped); lower is better.")
lpips_vgg16 = _lpips_of("vgg16", "Per-image LPIPS v0.1 with VGG16 (weights converted by the user: ``docs/lpips.md``).")


def _lpips_weights_present(net: str):
    def check():
        from linksim.lpips_weights import find_weights

        find_weights(net)
    return check


_ALL = [
    Metric("psnr", "psnr_db", "image", "Peak signal-to-noise ratio in dB (peak 1, mean of per-image values).", psnr),
    Metric("ssim", "ssim", "image", "Structural similarity, Gaussian window min(11, H, W).", ssim),
    Metric("ms_ssim", "ms_ssim", "image", "Multi-scale SSIM over the scales the image size allows.", ms_ssim),
    Metric("lpips", "lpips", "image",
           "LPIPS v0.1 perceptual distance, AlexNet (lower is better; < 64 px upsampled to 64).",
           lpips_alexnet, check=_lpips_weights_present("alexnet")),
    Metric("lpips_vgg", "lpips_vgg", "image",
           "LPIPS v0.1 perceptual distance, VGG16 (lower is better; weights converted by the user, docs/lpips.md).",
           lpips_vgg16, check=_lpips_weights_present("vgg16")),
    Metric("ber", "ber", "link", "Bit error rate of the information bits after channel decoding (digital schemes)."),
    Metric("bler", "bler", "link", "Block (codeword) error rate after channel decoding (digital schemes)."),
    Metric("bpp", "bpp", "link", "Source bits per pixel as sent (payload plus framing)."),
    Metric("channel_uses", "channel_uses", "link", "Complex channel uses per image (k)."),
    Metric("used_channel_uses", "used_channel_uses", "link",
           "Complex channel uses an image actually spent, mean over images (a gated scheme sends fewer than k; "
           "the spread is used_channel_uses_std)."),
    Metric("pilot_channel_uses", "pilot_channel_uses", "link",
           "Channel uses per image spent on pilots (a fading channel with csi: pilots, every hop's), on top of "
           "channel_uses."),
    Metric("decode_failures", "decode_failures", "link", "Images whose channel or image decoding failed (fallback shown)."),
    Metric("accuracy", "accuracy", "task",
           "Downstream classifier's accuracy on the received images (reference row: on the originals).",
           task="classification"),
    Metric("f1", "f1", "task", "Downstream classifier's macro F1 score on the received images.",
           task="classification"),
    Metric("feature_accuracy", "feature_accuracy", "task",
           "Accuracy of the scheme's own classification of the received features, without decoding the image "
           "(mcr2_jscc's nearest-subspace classifier; NaN for other schemes).", task="feature_classification"),
    Metric("hash_cos", "hash_cos", "task",
           "Mean cosine similarity of the DHD hashes H(S) and H(S') of sent and received images.", task="hashing"),
    Metric("hash_hamming", "hash_hamming", "task",
           "Mean Hamming distance, in bits, of the sign codes of H(S) and H(S').", task="hashing"),
    Metric("hash_hamming_norm", "hash_hamming_norm", "task",
           "Mean Hamming distance of the sign codes of H(S) and H(S') divided by K (fraction of bits).",
           task="hashing"),
    Metric("retrieval_map", "retrieval_map", "task",
           "mAP@1000 (task.hash.top_n) of the received images as queries against the training set's hash codes.",
           task="hashing"),
]
for _m in _ALL:
    _register(_m)
_BY_NAME = {m.name: m for m in _ALL}


def get_metric(name: str) -> Metric:
    """The :class:`Metric` registered under ``name`` (raises UnknownNameError)."""
    return METRICS.get(name).metric


def column_of(name: str) -> str:
    """The results-table column a metric name writes."""
    return get_metric(name).column


def image_metric_names(names) -> list[str]:
    """The image metrics among ``names``, in order."""
    return [n for n in names if get_metric(n).kind == "image"]


def task_metric_names(names) -> list[str]:
    """The task metrics (accuracy, f1, hash_cos, ...) among ``names``, in order."""
    return [n for n in names if get_metric(n).kind == "task"]


def task_names(names) -> list[str]:
    """The tasks that compute the task metrics among ``names``, in order of first use."""
    return list(dict.fromkeys(get_metric(n).task for n in task_metric_names(names)))
