"""What every transmission scheme offers the runner.

A scheme is a transmitter/receiver pair.  The runner calls

1. ``scheme.prepare(context)`` once (train or load models, compute the fallback
   image, fix the bit budget),
2. ``state = scheme.encode(images)`` once per batch of test images (the part of
   the transmitter that does not depend on the channel: source coding, the JSCC
   encoder), and
3. ``scheme.evaluate(state, snr_db)`` for every SNR point, which sends the batch
   through the channel and returns a :class:`BatchResult`.

Splitting 2 and 3 means an image is source-coded once, not once per SNR point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SchemeContext:
    """What a scheme may use to prepare itself.

    Attributes
    ----------
    image_shape : tuple[int, int, int]
        (H, W, C) of the images the scheme will carry.
    channel_uses : int
        Complex channel uses per image (k).
    train_images : np.ndarray
        [N, H, W, C] float32 in [0, 1]; used for the fallback (mean) image and for training.
    channel : object
        The channel of the scenario (a Keras layer with ``call(x, snr_db)``).
    seed : int
        The scenario's seed (the evaluation seed). Trained schemes seed their
        training with their own ``train_seed`` instead, so a stored model serves
        every scenario seed.
    dataset_spec : dict
        The scenario's ``dataset`` field (name, params, train_size): part of a
        trained model's store key.
    store : ModelStore or None
        Where trained models are loaded from and saved to.
    progress : bool
        Show training progress.
    train_missing : bool
        Train a model the store lacks (else a scheme that needs one raises ValueError).
    """

    image_shape: tuple
    channel_uses: int
    train_images: np.ndarray
    channel: Any
    seed: int = 0
    dataset_spec: dict = field(default_factory=dict)
    store: Any = None
    progress: bool = False
    train_missing: bool = True
    extra: dict = field(default_factory=dict)


@dataclass
class BatchResult:
    """The outcome of sending one batch at one SNR.

    Attributes
    ----------
    images : np.ndarray
        [B, H, W, C] float32 in [0, 1], the received images.
    counts : dict
        Sums over the batch that the runner adds up over batches: ``images``,
        ``source_bits``, ``channel_uses`` and for digital schemes ``bit_errors``,
        ``bits``, ``block_errors``, ``blocks``, ``decode_failures``; a variable-length
        transmission adds ``used_channel_uses`` and ``used_channel_uses_sq`` (the sums of
        the symbols each image used, and of their squares: the table's mean and spread).
    outputs : dict
        Per-image arrays ``[B]`` a task may read besides the images
        (:meth:`linksim.tasks.base.Task.evaluate_result`), e.g. ``feature_class``: the
        class a feature-space classifier gave each received image.
    """

    images: np.ndarray
    counts: dict
    outputs: dict = field(default_factory=dict)


class Scheme:
    """Base class of the transmission schemes (see the module docstring)."""

    #: True for schemes that send bits (they report BER / BLER / decode failures)
    digital: bool = False
    #: True for schemes with trained models (``linksim train`` prepares them)
    trainable: bool = False

    def __init__(self, label: str | None = None):
        self.label = label or type(self).__name__

    def prepare(self, context: SchemeContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, images: np.ndarray) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def evaluate(self, state: Any, snr_db: float) -> BatchResult:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:
        """Facts about the configured scheme for the run's metadata."""
        return {"label": self.label, "type": type(self).__name__}


def fallback_image(kind: str, train_images: np.ndarray, image_shape) -> np.ndarray:
    """The image a receiver shows when it cannot decode.

    Parameters
    ----------
    kind : {"mean", "gray", "black"}
        ``mean``: the per-pixel mean of the training images (the default);
        ``gray``: 0.5 everywhere; ``black``: zeros.

    Output
    ------
    [H, W, C], float32
    """
    if kind == "mean":
        if train_images is None or len(train_images) == 0:
            raise ValueError("fallback 'mean' needs training images")
        return np.asarray(train_images, np.float32).mean(axis=0)
    if kind == "gray":
        return np.full(image_shape, 0.5, np.float32)
    if kind == "black":
        return np.zeros(image_shape, np.float32)
    raise ValueError(f"unknown fallback {kind!r} (allowed: mean, gray, black)")
