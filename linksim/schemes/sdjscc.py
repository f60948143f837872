"""SD-JSCC: DeepJSCC fine-tuned with a semantic loss (the ``sdjscc`` and ``sdjscc_nogsw`` schemes).

Both are presets of :class:`~linksim.schemes.jscc.JSCCScheme`: the ``deepjscc``
architecture with the binary quantizer, stage 1 a ``mse`` stage (the ``deepjscc``
scheme's model), stage 2 the ``semantic`` loss
(:class:`linksim.losses.SDJSCCSemanticLoss`). The generic form is::

    - type: jscc
      architecture: {type: deepjscc, quantizer: binary}
      snr_train_db: 5
      stages:
        - {losses: [{type: mse}], epochs: 150}
        - {name: sdjscc, losses: [{type: semantic}], epochs: 15, learning_rate: 1.0e-5}

Sun, Guo, Yang, Chen, Tang, Liu, *Deep joint source-channel coding for wireless
image transmission with semantic importance*. The network is DeepJSCC with the
binary quantizer of eq. 14 (:mod:`linksim.schemes.deepjscc_layers`); only the
training loss differs (section IV-A: "SD-JSCC uses the same experimental
conditions with deep JSCC except for the loss function, including the
encoder-decoder network structure and quantization method").

Two-stage training (section IV-B)
---------------------------------
1. **Stage 1**: DeepJSCC with the binary quantizer, trained with MSE: exactly the
   model of a ``deepjscc`` scheme with the same options and ``quantizer: binary``
   (same store name and key, so the two share it: a scenario that also runs that
   DeepJSCC baseline trains it once).
2. **Stage 2**: the stage-1 weights, fine-tuned end to end (encoder and decoder,
   through the channel) with the semantic loss of eq. 13
   (:class:`linksim.losses.SemanticLoss`) for ``finetune_epochs`` epochs at
   ``finetune_learning_rate``, with the same training SNR, batch size, validation
   split and early stopping as stage 1 (the validation loss is the semantic loss).
   The semantic weights come from the GSW module (eqs. 7-10) on the downstream
   classifier's ``feature_layer``, computed once from ``calibration_size`` training
   images before fine-tuning (Algorithm 1, step 2) unless ``weights_from: batch``.
   The loss is eq. 13 alone, as in Algorithm 1 (step 10); ``mse_weight`` adds a
   pixel MSE term (not in the paper).

The downstream classifier is the scenario's (:func:`linksim.tasks.load_or_train_classifier`,
the same store entry the runner's accuracy metric uses), so the scheme reads from
``context.extra``:

- ``"train_labels"`` (required): the labels of ``context.train_images``;
- ``"task"``: the scenario's ``task`` field, whose ``classifier`` options shape the
  classifier (or ``"classifier_config"``: those options directly);
- ``"num_classes"`` (optional): default ``max(train_labels) + 1``; the runner's
  classifier counts the test labels too, so pass it when they can differ.

The fine-tuned model is stored under its own name (``sdjscc`` / ``sdjscc_nogsw``)
and key: the stage-1 spec, the classifier's store key and the SD-JSCC options.
A stored stage-2 model is loaded without touching stage 1.

Rate: the latent is ``2k`` bits per image (``k`` QPSK symbols), so ``bpp = 2k / (H W)``.

Measured
--------
Embedded Fashion-MNIST (8,100 training images, 500 test images, seed 1234), k = 98
(0.25 bpp), SNR_train 5 dB, the shipped models (stage 1 of 88 epochs, stage 2 of
1,890 steps at 1e-5), the shipped classifier (0.908 on the clean test images), one
run (the standard error of an accuracy near 0.8 on 500 images is about 1.7 points;
``scenarios/sdjscc_acc_vs_snr.yaml``, docs/sdjscc.md):

===========================================  ============  ============  ============
model                                        acc @ 0 dB    acc @ 4 dB    PSNR @ 6 dB
===========================================  ============  ============  ============
stage 1 (DeepJSCC, binary, MSE)              0.742         0.740         19.90 dB
sdjscc, tau 3000                             0.780         0.828         19.33 dB
sdjscc_nogsw                                 0.804         0.820         19.32 dB
===========================================  ============  ============  ============

The semantic fine-tuning gains 4 to 9 accuracy points for about 0.5 dB of PSNR
(the paper's pattern: +9.1 points at 5 dB, a slightly lower PSNR); the GSW weights
made no difference beyond the noise here, against the paper's ablation (its Fig. 6).
"""

from __future__ import annotations

from linksim.losses import SDJSCCSemanticLoss, _number, _positive_int
from linksim.registry import ARCHITECTURES, LOSSES, SCHEMES
from linksim.schemes.deepjscc import _FIRST_STAGE_DEFAULTS, DeepJSCCScheme
from linksim.schemes.deepjscc_layers import DIGITAL_QUANTIZERS
from linksim.schemes.jscc import (FIRST_STAGE_OPTIONS, SCHEME_OPTIONS, JSCCScheme, TrainingStage, preset_signature,
                                  split_preset_options)

__all__ = ["SDJSCCScheme", "SDJSCCNoGSWScheme"]

#: The stage-2 options as flat preset options (``finetune_<stage option>``), with their defaults.
_FINETUNE_DEFAULTS = {"epochs": 15, "learning_rate": 1e-5, "steps_per_epoch": None}
FINETUNE_OPTIONS = tuple("finetune_" + k for k in _FINETUNE_DEFAULTS)
#: The semantic-loss options a preset takes flat (``gsw`` is the preset's choice).
SEMANTIC_OPTIONS = tuple(p for p in LOSSES.options("semantic") if p != "gsw")


@SCHEMES.register("sdjscc")
class SDJSCCScheme(JSCCScheme):
    """SD-JSCC (Sun et al.): binary-quantised DeepJSCC fine-tuned with the GSW-weighted semantic loss.

    Parameters
    ----------
    snr_train_db, filters, kernel_size, snr_side_info, epochs, batch_size, learning_rate, patience,
    lr_patience, val_fraction, steps_per_epoch, jit_compile, train_channel, train_seed, spread, label :
        As :class:`~linksim.schemes.deepjscc.DeepJSCCScheme`; they define stage 1
        (and the SNR, batch size, validation split and patience of stage 2).
    feature_layer, tau, r, weights_from, classes, calibration_size, mse_weight :
        The semantic loss of stage 2 (:class:`linksim.losses.SDJSCCSemanticLoss`).
    quantizer : {"binary", "onoff"}
        The binary quantizer of eq. 14 (the paper's SD-JSCC and its DeepJSCC
        baseline both use it): ``binary`` (default) sends the bits as antipodal
        (QPSK) symbols, ``onoff`` on-off keys them as the paper's Algorithm 1 does
        (3 dB worse at equal average energy; docs/sdjscc.md).
    feature_layer : str
        The classifier layer whose feature maps are weighted (eq. 7), ``"conv1"``
        .. ``"conv4"`` (default ``"conv4"``, the last convolution block).
    tau : float > 0
        Temperature of eq. 10 (default 3000). ``W`` of eq. 9 is small (about 1e-4
        for linksim's classifier, the paper's "too small" values), so ``tau`` of
        order 1e3 to 1e4 spreads the weights; ``tau = 1`` makes them nearly
        uniform (the ablation up to scale). The paper explores 1 to 10^4 (Fig. 7)
        and gives no single best value; 3000 makes the weights of linksim's
        default classifier span about one decade at ``conv4``.
    r : float > 0 or None
        Scale of eq. 10, the sum of the weights. Default None: ``r = K`` (the
        number of feature maps), so the weights average 1 and the ablation's
        all-ones weights are the ``tau -> 0`` limit at the same loss scale.
    weights_from : {"calibration", "batch"}
        ``calibration`` (default, Algorithm 1 step 2): the weights are computed once
        before fine-tuning and fixed; ``batch``: recomputed on every batch's
        transmitted images.
    classes : {"all", "predicted"}
        ``all`` (default, eq. 9): the gradients of all class logits are averaged;
        ``predicted``: the predicted class's logit only (Grad-CAM; not the paper's).
    calibration_size : int
        Training images (from the training part of the split, not the validation
        part) the calibrated weights are averaged over (default 1000).
    mse_weight : float >= 0
        Weight of an added pixel MSE term in stage 2 (default 0, as in the paper).
    finetune_epochs : int
        Maximum epochs of stage 2 (default 15: about 1,900 steps on the embedded
        data, a tenth of the shipped stage 1's 150 epochs, as the paper fine-tunes
        for 2-3e4 steps after 3-4e5 steps of stage 1).
    finetune_learning_rate : float > 0 or None
        Adam's learning rate in stage 2 (default 1e-5, the paper's). None: stage 1's
        ``learning_rate``. Measured on the Table I setting (docs/sdjscc.md), 1e-5
        over 1,890 steps gives the accuracy of 1e-3 over 200 steps and keeps
        0.4-0.6 dB more PSNR.
    finetune_steps_per_epoch : int, optional
        Cap on batches per stage-2 epoch (default: all).

    Raises
    ------
    ValueError
        For an option outside its allowed values (the message gives them).
    """

    gsw = True
    stage2_name = "sdjscc"

    __signature__ = preset_signature((JSCCScheme, ("architecture", "stages"), "", {}),
                                     (DeepJSCCScheme.__signature__, (), "", {"quantizer": "binary"}),
                                     (SDJSCCSemanticLoss, ("gsw",), "", {}),
                                     (TrainingStage, ("losses", "name"), "finetune_", _FINETUNE_DEFAULTS))

    def __init__(self, **options):
        name = self.stage2_name
        g = split_preset_options(name, options, {"scheme": SCHEME_OPTIONS,
                                                 "architecture": ARCHITECTURES.options("deepjscc"),
                                                 "stage": FIRST_STAGE_OPTIONS, "semantic": SEMANTIC_OPTIONS,
                                                 "finetune": FINETUNE_OPTIONS})
        quantizer = g["architecture"].pop("quantizer", "binary")
        if quantizer not in DIGITAL_QUANTIZERS:
            raise ValueError(f"{type(self).__name__} uses the binary quantizer of eq. 14: quantizer must be one of "
                             f"{', '.join(DIGITAL_QUANTIZERS)} (got {quantizer!r})")
        finetune = {**_FINETUNE_DEFAULTS, **{k[len("finetune_"):]: v for k, v in g["finetune"].items()}}
        # TrainingStage checks these too; here the messages name the preset's options
        _positive_int("finetune_epochs", finetune["epochs"])
        _positive_int("finetune_steps_per_epoch", finetune["steps_per_epoch"], allow_none=True)
        if finetune["learning_rate"] is not None:
            _number("finetune_learning_rate", finetune["learning_rate"], positive=True)
        loss = SDJSCCSemanticLoss(gsw=self.gsw, **g["semantic"])
        stages = [{**_FIRST_STAGE_DEFAULTS, **g["stage"], "losses": [{"type": "mse"}]},
                  {**finetune, "name": name, "losses": [{"loss": loss}]}]
        super().__init__(architecture={"type": "deepjscc", "quantizer": quantizer, **g["architecture"]},
                         stages=stages, **g["scheme"])
        self.semantic_weights = None

    # ----------------------------------------------------------------- views
    @property
    def semantic(self) -> SDJSCCSemanticLoss:
        """Stage 2's semantic loss."""
        return self.stages[1].losses[0]

    @property
    def semantic_config(self) -> dict:
        return self.semantic.semantic_config()

    @property
    def finetune_config(self):
        """Stage 2's :class:`~linksim.training.TrainConfig`."""
        return self.configs[1]

    @property
    def stage1_entry(self):
        return self.stage_entries[0]

    @property
    def classifier_entry(self):
        return self.semantic.classifier_entry

    def _loaded_card(self, card: dict) -> None:
        self.semantic_weights = card.get("semantic_weights")

    def stage_model(self, context, i: int):
        model, entry = super().stage_model(context, i)
        if i == 1 and self.semantic.loss is not None:
            self.semantic_weights = self.semantic.semantic_weights
        return model, entry

    def describe(self) -> dict:
        d = super().describe()
        d.pop("stages", None)
        d.update(semantic=self.semantic_config, finetune_epochs=self.finetune_config.epochs,
                 finetune_learning_rate=self.finetune_config.learning_rate,
                 stage1_model=str(self.stage1_entry.path) if self.stage1_entry is not None else None)
        return d


@SCHEMES.register("sdjscc_nogsw")
class SDJSCCNoGSWScheme(SDJSCCScheme):
    """SD-JSCC without the GSW module (the paper's ablation, section IV-C2): every semantic weight 1.

    Same options as :class:`SDJSCCScheme` except the GSW ones (``tau``, ``r``,
    ``weights_from``, ``classes``, ``calibration_size``), which do not apply and
    are refused when set to anything but their defaults. Stored under its own
    name (``sdjscc_nogsw``) and key; stage 1 is shared with ``sdjscc``.

    Raises
    ------
    ValueError
        For an option outside its allowed values, or a GSW option.
    """

    gsw = False
    stage2_name = "sdjscc_nogsw"
