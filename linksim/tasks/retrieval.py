"""The hashing task: DHD hash agreement and retrieval mAP of received images.

The deep hash network H (:class:`~linksim.tasks.hashing.DeepHashNetwork`, DHD) is
trained on the scenario's original training images, or loaded from the model store
like the classifier, and frozen. For every received image S' of an original S it
gives (metrics, registered with ``task="hashing"``):

- ``hash_cos``: the mean over images of ``cos(H(S), H(S'))`` of the continuous
  (tanh) hashes;
- ``hash_hamming``: the mean Hamming distance, in bits, of their sign codes;
- ``hash_hamming_norm``: the same divided by K (the fraction of differing bits, in
  [0, 1], comparable across K);
- ``retrieval_map``: mAP@top_n (default 1000) with the received images as queries
  against the sign codes of the training set (relevant = same label; ties in
  Hamming distance broken by training-set order): whether the destination's image
  still finds its class.

The reference row gives them on the original test images (``hash_cos`` 1,
Hamming 0, ``retrieval_map`` the network's own mAP). Scenario options:
``task: {hash: {bits: 32, ...}}`` (:data:`~linksim.tasks.hashing.HASH_OPTIONS`, with
its own ``train_seed``, default 1234).
"""

from __future__ import annotations

import numpy as np

from linksim.registry import TASKS
from linksim.tasks.base import Task, TaskContext
from linksim.tasks.classification import num_classes_of

__all__ = ["HashingTask", "hash_request"]


def hash_request(*, dataset_spec, image_shape, x_train, y_train, num_classes=None, config=None) -> dict:
    """Arguments of :func:`~linksim.tasks.hashing.load_or_train_hash_network` (one place builds them).

    ``num_classes`` None: ``max(y_train) + 1``.
    """
    num_classes = int(np.max(y_train)) + 1 if num_classes is None else int(num_classes)
    return {"dataset_spec": dataset_spec, "image_shape": tuple(image_shape), "num_classes": num_classes,
            "x_train": x_train, "y_train": y_train, "config": config}


@TASKS.register("hashing")
class HashingTask(Task):
    """Frozen DHD hash network on the received images: hash agreement and retrieval mAP.

    Metrics ``hash_cos``, ``hash_hamming``, ``hash_hamming_norm``, ``retrieval_map``
    (see the module docstring).

    Parameters
    ----------
    hash : dict, optional
        The hash network's options (scenario ``task.hash``:
        :data:`linksim.tasks.hashing.HASH_OPTIONS`).

    Raises
    ------
    ValueError
        From :meth:`prepare`: the data set has no labels, or a hash option is invalid.
    """

    metrics = ("hash_cos", "hash_hamming", "hash_hamming_norm", "retrieval_map")
    label = "deep hash network"
    meta_key = "hash_network"

    def __init__(self, hash: dict | None = None):  # noqa: A002 - the scenario's field name
        self.hash = hash
        self.top_n = None
        self.model = None
        self.entry = None

    def prepare(self, context: TaskContext) -> None:
        from linksim.tasks.hashing import _resolve_config, hash_outputs, load_or_train_hash_network

        _, _, eval_cfg = _resolve_config(self.hash)
        self.top_n = int(eval_cfg["top_n"])

        if context.y_train is None or context.y_test is None:
            name = context.dataset_spec.get("name")
            raise ValueError(f"the hash network and retrieval_map need a labelled data set; '{name}' has no labels")
        self.num_classes = num_classes_of(context.y_train, context.y_test)
        self.model, self.entry = load_or_train_hash_network(
            context.store, progress=context.progress, train_missing=context.train_missing,
            x_test=context.x_test, y_test=context.y_test,
            **hash_request(dataset_spec=context.dataset_spec, image_shape=context.image_shape,
                           x_train=context.x_train, y_train=context.y_train, num_classes=self.num_classes,
                           config=self.hash))
        self.model.trainable = False
        self.gallery = hash_outputs(self.model, context.x_train)
        self.gallery_labels = np.asarray(context.y_train)
        self.x_test = context.x_test
        self.y_test = np.asarray(context.y_test)
        self.h_test = hash_outputs(self.model, context.x_test)

    def evaluate(self, received_images, indices) -> dict[str, np.ndarray]:
        """Per image: ``cos``, ``hamming`` (bits) and ``ap`` (AP@top_n of the received image as a query)."""
        from linksim.tasks.hashing import average_precision, cosine_similarity, hamming_distance, hash_outputs

        idx = np.asarray(indices)
        h = hash_outputs(self.model, received_images)
        ref = self.h_test[idx]
        return {"cos": cosine_similarity(ref, h), "hamming": hamming_distance(ref, h).astype(np.float64),
                "ap": average_precision(h, self.y_test[idx], self.gallery, self.gallery_labels, self.top_n)}

    def summarise(self, outputs, indices) -> dict[str, float]:
        """Means over the images of the per-image values."""
        k = float(self.model.bits)
        ham = float(np.mean(outputs["hamming"]))
        return {"hash_cos": float(np.mean(outputs["cos"])), "hash_hamming": ham, "hash_hamming_norm": ham / k,
                "retrieval_map": float(np.mean(outputs["ap"]))}

    def _reference_images(self):
        return self.x_test

    def describe(self) -> dict:
        return {"stored_model": str(self.entry.path) if self.entry is not None else None,
                "bits": int(self.model.bits) if self.model is not None else None, "top_n": self.top_n}
