"""Downstream networks that judge what a received image still means.

``classifier``
    :class:`~linksim.tasks.classifier.ImageClassifier`, a small CNN whose accuracy on
    received images is the semantic-fidelity metric; its training, model-store
    access (:func:`~linksim.tasks.classifier.load_or_train_classifier`) and the
    task metrics :func:`~linksim.tasks.classifier.accuracy`,
    :func:`~linksim.tasks.classifier.macro_f1`,
    :func:`~linksim.tasks.classifier.predict_labels`.
``base``
    :class:`~linksim.tasks.base.Task`, the interface the evaluation calls tasks through,
    and :class:`~linksim.tasks.base.TaskContext`.
``classification``
    :class:`~linksim.tasks.classification.ClassificationTask`, registered as task
    ``classification`` (metrics ``accuracy`` and ``f1``).
``hashing``
    :class:`~linksim.tasks.hashing.DeepHashNetwork`, the deep hash network of Deep Hash
    Distillation (DHD), its losses, training, model-store access
    (:func:`~linksim.tasks.hashing.load_or_train_hash_network`) and the retrieval
    measures (:func:`~linksim.tasks.hashing.mean_average_precision`, ...).
``retrieval``
    :class:`~linksim.tasks.retrieval.HashingTask`, registered as task ``hashing``
    (metrics ``hash_cos``, ``hash_hamming``, ``hash_hamming_norm``, ``retrieval_map``;
    scenario options ``task: {hash: {...}}``).
"""

from linksim.tasks.classifier import (DEFAULT_MODEL, DEFAULT_TRAINING, FEATURE_LAYERS, ConvBlock,
                                      ImageClassifier, accuracy, classifier_spec, load_or_train_classifier,
                                      macro_f1, predict_labels, train_classifier)
from linksim.tasks.base import Task, TaskContext
from linksim.tasks.classification import ClassificationTask
from linksim.tasks.hashing import DeepHashNetwork, load_or_train_hash_network, mean_average_precision
from linksim.tasks.retrieval import HashingTask

__all__ = ["ImageClassifier", "ConvBlock", "FEATURE_LAYERS", "DEFAULT_MODEL", "DEFAULT_TRAINING",
           "train_classifier", "load_or_train_classifier", "classifier_spec", "predict_labels",
           "accuracy", "macro_f1", "Task", "TaskContext", "ClassificationTask", "DeepHashNetwork",
           "load_or_train_hash_network", "mean_average_precision", "HashingTask"]
