"""Classification in feature space: the accuracy of a scheme's own classifier on the received features.

A scheme that classifies what it receives without decoding the image (the
``mcr2_jscc`` scheme's nearest-subspace classifier, :mod:`linksim.schemes.mcr2`)
reports each image's class in its :class:`~linksim.schemes.base.BatchResult`
(``outputs["feature_class"]``); this task compares those classes with the test
labels. Schemes that do not classify in feature space get NaN. There is no
reference row (no scheme-independent feature space to classify the originals in).
"""

from __future__ import annotations

import numpy as np

from linksim.registry import TASKS
from linksim.tasks.base import Task, TaskContext

__all__ = ["FeatureClassificationTask"]


@TASKS.register("feature_classification")
class FeatureClassificationTask(Task):
    """Accuracy of the scheme's feature-space classification of the received images (metric feature_accuracy).

    Raises
    ------
    ValueError
        From :meth:`prepare`: the data set has no labels.
    """

    metrics = ("feature_accuracy",)
    label = "feature-space classification"

    def prepare(self, context: TaskContext) -> None:
        if context.y_test is None:
            name = context.dataset_spec.get("name")
            raise ValueError(f"feature_accuracy needs a labelled data set; '{name}' has no labels")
        self.y_test = np.asarray(context.y_test)

    def evaluate_result(self, result, indices) -> dict[str, np.ndarray]:
        """``{"correct": 1/0 per image}``, NaN for a scheme without ``outputs["feature_class"]``."""
        pred = (result.outputs or {}).get("feature_class")
        if pred is None:
            return {"correct": np.full(len(indices), np.nan)}
        return {"correct": (np.asarray(pred) == self.y_test[np.asarray(indices)]).astype(np.float64)}

    def evaluate(self, received_images, indices) -> dict[str, np.ndarray]:
        """Images alone carry no features: NaN per image."""
        return {"correct": np.full(len(indices), np.nan)}

    def summarise(self, outputs, indices) -> dict[str, float]:
        correct = outputs.get("correct")
        if correct is None or not len(correct) or np.isnan(correct).all():
            return {"feature_accuracy": float("nan")}
        return {"feature_accuracy": float(np.mean(correct))}

    def reference_row(self) -> dict[str, float]:
        return {}
