"""What a downstream task offers the evaluation (the task interface).

A task judges what the received images still *mean*: a classifier's accuracy, a
retrieval rank, a feature-space distance.  Each task is a class registered in
:data:`linksim.registry.TASKS`; each of its metrics is registered in
:data:`linksim.registry.METRICS` with ``kind="task"`` and ``task=<the task's name>``.
The evaluation builds the tasks the scenario's metrics name and calls them through
this interface only; it knows no task by name.

Life of a task in a run::

    task = TASKS.get(name)(**options)        # options: the scenario's ``task:`` fields it takes
    task.prepare(context)                    # train or load its networks (TaskContext)
    row = task.reference_row()               # its metrics on the original test images
    for each (scheme, SNR point):
        for each batch:
            out = task.evaluate_result(result, indices)     # per-image outputs of a batch
        values = task.summarise(outputs, indices)           # metric columns of the point

``outputs`` is ``{key: np.concatenate(per-batch arrays)}`` over the whole test set;
``indices`` are the test-set positions of the images (``np.arange(n)`` for a batch
starting at 0), so a task compares with its own copy of the labels or features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Task", "TaskContext"]


@dataclass
class TaskContext:
    """What a task may use to prepare itself.

    Attributes
    ----------
    x_train, y_train, x_test, y_test : np.ndarray or None
        The scenario's images (float in [0, 1], ``[N, H, W, C]``) and labels (None for an
        unlabelled data set).
    dataset_spec : dict
        ``{"name", "params", "train_size"}`` of the data set (model-store keys use it).
    image_shape : tuple
        ``(H, W, C)``.
    seed : int
        The scenario's seed.
    store : ModelStore
        Where trained networks are found and stored.
    progress : bool or str
        Show training progress.
    train_missing : bool
        Train a network the store lacks (False: a missing one is an error).
    extra : dict
        Anything else (reserved for tasks to come).
    """

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    dataset_spec: dict
    image_shape: tuple
    seed: int
    store: Any = None
    progress: Any = True
    train_missing: bool = True
    extra: dict = field(default_factory=dict)


class Task:
    """Base class of downstream tasks (see the module docstring for the life cycle).

    Subclasses set :attr:`metrics` and implement :meth:`prepare`, :meth:`evaluate`,
    :meth:`summarise`; :meth:`reference_row` and :meth:`describe` have defaults.
    Errors the user can fix (no labels, a bad option) are raised as ``ValueError``;
    the evaluation reports them against the scenario's ``metrics`` field.
    """

    #: The metric names (registered with ``task=<this task's name>``) it computes.
    metrics: tuple[str, ...] = ()
    #: What ``linksim train`` and the progress messages call it.
    label: str = "downstream task"
    #: ``meta.json`` also holds :meth:`describe` under this key (besides ``tasks.<name>``).
    meta_key: str | None = None

    def prepare(self, context: TaskContext) -> None:
        """Train or load what the task needs; keep what :meth:`evaluate` compares with."""
        raise NotImplementedError

    def evaluate(self, received_images, indices) -> dict[str, np.ndarray]:
        """Per-image outputs for a batch of received images (``indices``: their test-set positions)."""
        raise NotImplementedError

    def evaluate_result(self, result, indices) -> dict[str, np.ndarray]:
        """Per-image outputs for a scheme's :class:`~linksim.schemes.base.BatchResult` (what the run calls).

        Default: :meth:`evaluate` of the received images. A task that reads what a
        scheme reports besides the images (``result.outputs``, e.g. a feature-space
        classification) overrides this.
        """
        return self.evaluate(result.images, indices)

    def evaluate_results(self, results: list, indices: list) -> list[dict[str, np.ndarray]]:
        """:meth:`evaluate_result` of several results (e.g. one batch at several SNR points) at once.

        Default: when the task reads only the images (it does not override
        :meth:`evaluate_result`), one :meth:`evaluate` call on all the images, split back per
        result; a model's predictions then run in fewer, larger calls. Otherwise one
        :meth:`evaluate_result` per result. Per-image outputs are the same either way.
        """
        if type(self).evaluate_result is not Task.evaluate_result or len(results) < 2:
            return [self.evaluate_result(r, i) for r, i in zip(results, indices)]
        out = self.evaluate(np.concatenate([r.images for r in results]), np.concatenate(indices))
        ends = np.cumsum([len(i) for i in indices])[:-1]
        split = {k: np.split(np.asarray(v), ends) for k, v in out.items()}
        return [{k: v[n] for k, v in split.items()} for n in range(len(results))]

    def summarise(self, outputs: dict[str, np.ndarray], indices) -> dict[str, float]:
        """The metric values (results-table columns) of a whole SNR point from its outputs."""
        raise NotImplementedError

    def reference_row(self) -> dict[str, float]:
        """The metric values on the original test images (the ceiling of every scheme)."""
        x = self._reference_images()
        idx = np.arange(len(x))
        return self.summarise(self.evaluate(x, idx), idx)

    def _reference_images(self):
        raise NotImplementedError

    def describe(self) -> dict:
        """Facts for ``meta.json`` (e.g. the stored model used)."""
        return {}
