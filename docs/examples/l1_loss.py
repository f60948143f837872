"""A linksim plug-in: the L1 (mean absolute error) loss for a JSCC training stage.

The walkthrough of ``docs/extending.md``: a new JSCC loss is this one file.  Load
it with ``--plugin docs/examples/l1_loss.py`` (or a ``plugins:`` list in the
scenario) and name it in a stage of a ``jscc`` scheme::

    - type: jscc
      architecture: {type: deepjscc}
      stages:
        - losses: [{type: mse}, {type: example_l1, weight: 0.1, scale: 1.0}]
"""

import tensorflow as tf

from linksim.losses import JSCCLoss, images_of
from linksim.registry import LOSSES


@LOSSES.register("example_l1")
class ExampleL1Loss(JSCCLoss):
    """Mean absolute pixel error, ``scale * mean(|x - x'|)``.

    Parameters
    ----------
    scale : float > 0
        A factor on the loss (an example of an option; it is part of the store key).

    Raises
    ------
    ValueError
        If ``scale`` is not a positive number.
    """

    label = "example_l1"

    def __init__(self, scale: float = 1.0):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"example_l1: scale must be a positive number (got {scale!r})")
        self.scale = float(scale)

    def spec(self, context) -> dict:
        return {"example_l1": {"scale": self.scale}}   # what changes the trained weights

    def __call__(self, x, out):
        return self.scale * tf.reduce_mean(tf.abs(x - images_of(out)))

    def get_config(self) -> dict:
        return {"scale": self.scale}
