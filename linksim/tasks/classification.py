"""The classification task: a downstream classifier's accuracy and macro F1 on received images.

The classifier (:class:`~linksim.tasks.classifier.ImageClassifier`) is trained on the
scenario's original training images, or loaded from the model store like the JSCC
models; its accuracy on the original test images is the reference row.
Scenario options: ``task: {classifier: {...}}`` (the classifier's model and training
options, :func:`~linksim.tasks.classifier.load_or_train_classifier`, with its own
``train_seed``, default 1234: the scenario's ``seed`` does not retrain it).
"""

from __future__ import annotations

import numpy as np

from linksim.registry import TASKS
from linksim.tasks.base import Task, TaskContext

__all__ = ["ClassificationTask", "num_classes_of"]


def num_classes_of(y_train, y_test) -> int | None:
    """Classes of a labelled data set (the largest label in either split, plus one); None unlabelled."""
    if y_train is None or y_test is None:
        return None
    return int(max(int(np.max(y_train)), int(np.max(y_test))) + 1)


@TASKS.register("classification")
class ClassificationTask(Task):
    """Downstream classifier on the received images: accuracy and macro F1 (metrics accuracy, f1).

    Parameters
    ----------
    classifier : dict, optional
        The classifier's model and training options (scenario ``task.classifier``).

    Raises
    ------
    ValueError
        From :meth:`prepare`: the data set has no labels, or a classifier option is invalid.
    """

    metrics = ("accuracy", "f1")
    label = "downstream classifier"
    meta_key = "classifier"

    def __init__(self, classifier: dict | None = None):
        self.classifier = classifier
        self.model = None
        self.entry = None

    def prepare(self, context: TaskContext) -> None:
        from linksim.tasks.classifier import load_or_train_classifier

        if context.y_train is None or context.y_test is None:
            name = context.dataset_spec.get("name")
            raise ValueError(f"accuracy and f1 need a labelled data set; '{name}' has no labels")
        self.num_classes = num_classes_of(context.y_train, context.y_test)
        self.model, self.entry = load_or_train_classifier(
            context.store, dataset_spec=context.dataset_spec, image_shape=tuple(context.image_shape),
            num_classes=self.num_classes, x_train=context.x_train, y_train=context.y_train,
            config=self.classifier, progress=context.progress,
            train_missing=context.train_missing)
        self.y_test = np.asarray(context.y_test)
        self.x_test = context.x_test

    def evaluate(self, received_images, indices) -> dict[str, np.ndarray]:
        """``{"pred": predicted labels}`` of a batch."""
        from linksim.tasks.classifier import predict_labels

        return {"pred": predict_labels(self.model, received_images)}

    def summarise(self, outputs, indices) -> dict[str, float]:
        """``accuracy`` and ``f1`` (macro) of the predictions against the true labels."""
        from linksim.tasks.classifier import accuracy, macro_f1

        pred = outputs["pred"]
        y = self.y_test[np.asarray(indices)]
        return {"accuracy": float(accuracy(y, pred)), "f1": float(macro_f1(y, pred, self.num_classes))}

    def _reference_images(self):
        return self.x_test

    def describe(self) -> dict:
        return {"stored_model": str(self.entry.path) if self.entry is not None else None,
                "num_classes": self.num_classes}
