"""SD-JSCC: DeepJSCC fine-tuned with a semantic loss (the ``sdjscc`` and ``sdjscc_nogsw`` schemes).

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
Embedded Fashion-MNIST (9,000 training images, 1,000 test images), k = 98 (0.25
bpp), SNR_train 5 dB, stage 1 of 20 epochs, stage 2 of 6 epochs, the shipped
classifier (89.1 % on the clean test images), one run each (the standard error
of an accuracy near 0.8 on 1,000 images is about 1.3 points):

===========================================  ============  ============  ============
model                                        acc @ 0 dB    acc @ 5 dB    PSNR @ 5 dB
===========================================  ============  ============  ============
stage 1 (DeepJSCC, binary, MSE)              0.664         0.678         18.61 dB
sdjscc, tau 3000, fine-tune lr 1e-4          0.792         0.792         18.02 dB
sdjscc_nogsw, fine-tune lr 1e-4              0.787         0.797         18.03 dB
sdjscc, tau 1e4, fine-tune lr 1e-4           0.791         0.803         17.99 dB
sdjscc, tau 3000, fine-tune lr 1e-3          0.799         0.814         17.81 dB
sdjscc_nogsw, fine-tune lr 1e-3              0.800         0.814         17.89 dB
===========================================  ============  ============  ============

The semantic fine-tuning gains 11 to 14 accuracy points for about 0.6 to 0.8 dB
of PSNR (the paper's pattern: +9.1 points at 5 dB, a slightly lower PSNR); the
GSW weights made no difference beyond the noise here, against the paper's
ablation (its Fig. 6).
"""

from __future__ import annotations

import keras
import numpy as np

from linksim.losses import CLASS_AVERAGING, WEIGHTS_FROM, SemanticLoss
from linksim.registry import SCHEMES
from linksim.schemes.base import SchemeContext
from linksim.schemes.deepjscc import DeepJSCCScheme
from linksim.store import spec_key
from linksim.training import TrainConfig, _split, train_jscc

__all__ = ["SDJSCCScheme", "SDJSCCNoGSWScheme"]

#: Defaults of the options that only the GSW module uses (the ablation rejects other values).
_GSW_DEFAULTS = {"tau": 3000.0, "r": None, "weights_from": "calibration", "classes": "all",
                 "calibration_size": 1000}


@SCHEMES.register("sdjscc")
class SDJSCCScheme(DeepJSCCScheme):
    """SD-JSCC (Sun et al.): binary-quantised DeepJSCC fine-tuned with the GSW-weighted semantic loss.

    Parameters
    ----------
    snr_train_db, filters, kernel_size, snr_side_info, epochs, batch_size, learning_rate, patience,
    lr_patience, val_fraction, steps_per_epoch, jit_compile, train_channel, label :
        As :class:`~linksim.schemes.deepjscc.DeepJSCCScheme`; they define stage 1
        (and the SNR, batch size, validation split and patience of stage 2).
    quantizer : {"binary"}
        Always the binary quantizer of eq. 14 (the paper's SD-JSCC and its DeepJSCC
        baseline both use it).
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
        Maximum epochs of stage 2 (default 6: the paper fine-tunes for 2-3e4 steps
        after 3-4e5 steps of stage 1, i.e. under a tenth of stage 1's steps).
    finetune_learning_rate : float > 0 or None
        Adam's learning rate in stage 2. Default None: stage 1's ``learning_rate``,
        as in the paper (1e-5 in both stages). Measured (see below), 1e-3 gave
        about 2 points more accuracy than 1e-4 for 0.2 dB less PSNR.
    finetune_steps_per_epoch : int, optional
        Cap on batches per stage-2 epoch (default: all).

    Raises
    ------
    ValueError
        For an option outside its allowed values (the message gives them).
    """

    #: False in the ablation (every semantic weight 1)
    gsw = True
    #: Model-store name of the fine-tuned (stage-2) model
    stage2_name = "sdjscc"

    def __init__(self, snr_train_db=10.0, filters=(16, 32, 32, 32), kernel_size: int = 5,
                 quantizer: str = "binary", snr_side_info: bool = False, epochs: int = 60,
                 batch_size: int = 64, learning_rate: float = 1e-3, patience: int = 8, lr_patience: int = 3,
                 val_fraction: float = 0.1, steps_per_epoch: int | None = None, jit_compile: bool = False,
                 train_channel: str = "awgn", label: str | None = None, feature_layer: str = "conv4",
                 tau: float = _GSW_DEFAULTS["tau"], r: float | None = _GSW_DEFAULTS["r"],
                 weights_from: str = _GSW_DEFAULTS["weights_from"], classes: str = _GSW_DEFAULTS["classes"],
                 calibration_size: int = _GSW_DEFAULTS["calibration_size"], mse_weight: float = 0.0,
                 finetune_epochs: int = 6, finetune_learning_rate: float | None = None,
                 finetune_steps_per_epoch: int | None = None):
        if quantizer != "binary":
            raise ValueError(f"{type(self).__name__} uses the binary quantizer of eq. 14: quantizer must be "
                             f"binary (got {quantizer!r})")
        super().__init__(snr_train_db=snr_train_db, filters=filters, kernel_size=kernel_size,
                         quantizer="binary", snr_side_info=snr_side_info, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, patience=patience, lr_patience=lr_patience,
                         val_fraction=val_fraction, steps_per_epoch=steps_per_epoch, jit_compile=jit_compile,
                         train_channel=train_channel, label=label)
        from linksim.tasks.classifier import FEATURE_LAYERS

        if feature_layer not in FEATURE_LAYERS:
            raise ValueError(f"feature_layer must be one of {', '.join(FEATURE_LAYERS)} (got {feature_layer!r})")
        if not self.gsw:
            given = {"tau": tau, "r": r, "weights_from": weights_from, "classes": classes,
                     "calibration_size": calibration_size}
            odd = sorted(k for k, v in given.items() if v != _GSW_DEFAULTS[k])
            if odd:
                raise ValueError(f"{type(self).__name__} is SD-JSCC without the GSW module (every semantic "
                                 f"weight 1): option(s) {', '.join(odd)} do not apply")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not np.isfinite(tau) or tau <= 0:
            raise ValueError(f"tau must be a positive number (got {tau!r})")
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not np.isfinite(r)
                              or r <= 0):
            raise ValueError(f"r must be a positive number or null (null: the number of feature maps) "
                             f"(got {r!r})")
        if weights_from not in WEIGHTS_FROM:
            raise ValueError(f"weights_from must be one of {', '.join(WEIGHTS_FROM)} (got {weights_from!r})")
        if classes not in CLASS_AVERAGING:
            raise ValueError(f"classes must be one of {', '.join(CLASS_AVERAGING)} (got {classes!r})")
        for name, v in (("calibration_size", calibration_size), ("finetune_epochs", finetune_epochs)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer (got {v!r})")
        if finetune_steps_per_epoch is not None and (isinstance(finetune_steps_per_epoch, bool) or not isinstance(
                finetune_steps_per_epoch, (int, np.integer)) or finetune_steps_per_epoch < 1):
            raise ValueError(f"finetune_steps_per_epoch must be a positive integer or null "
                             f"(got {finetune_steps_per_epoch!r})")
        if isinstance(mse_weight, bool) or not isinstance(mse_weight, (int, float)) or not mse_weight >= 0:
            raise ValueError(f"mse_weight must be a number >= 0 (got {mse_weight!r})")
        if finetune_learning_rate is not None and (isinstance(finetune_learning_rate, bool) or not isinstance(
                finetune_learning_rate, (int, float)) or not finetune_learning_rate > 0):
            raise ValueError(f"finetune_learning_rate must be a number > 0 or null (null: learning_rate) "
                             f"(got {finetune_learning_rate!r})")
        tc = self.train_config
        self.semantic_config = {"feature_layer": feature_layer, "mse_weight": float(mse_weight),
                                "gsw": self.gsw}
        if self.gsw:
            self.semantic_config.update(tau=float(tau), r=None if r is None else float(r),
                                        weights_from=weights_from, classes=classes,
                                        calibration_size=int(calibration_size))
        # stage 2: stage 1's SNR, batch size, split and patience; its own epochs, rate and steps
        self.finetune_config = TrainConfig(epochs=int(finetune_epochs), batch_size=tc.batch_size,
                                           learning_rate=tc.learning_rate if finetune_learning_rate is None
                                           else finetune_learning_rate, patience=tc.patience,
                                           lr_patience=tc.lr_patience, val_fraction=tc.val_fraction,
                                           snr_train_db=tc.snr_train_db,
                                           steps_per_epoch=finetune_steps_per_epoch)
        self._stage1_options = {"snr_train_db": snr_train_db, "filters": filters, "kernel_size": kernel_size,
                                "quantizer": "binary", "snr_side_info": snr_side_info, "epochs": epochs,
                                "batch_size": batch_size, "learning_rate": learning_rate, "patience": patience,
                                "lr_patience": lr_patience, "val_fraction": val_fraction,
                                "steps_per_epoch": steps_per_epoch, "jit_compile": jit_compile,
                                "train_channel": train_channel}
        self.semantic_weights = None
        self.stage1_entry = None
        self.classifier_entry = None

    # ----------------------------------------------------------------- stages
    def stage1_scheme(self) -> DeepJSCCScheme:
        """The equivalent ``deepjscc`` scheme (binary quantizer, MSE): stage 1."""
        return DeepJSCCScheme(label=f"{self.label} (stage 1: DeepJSCC, binary, MSE)", **self._stage1_options)

    def store_name(self) -> str:
        return self.stage2_name

    def _classifier_request(self, context: SchemeContext) -> dict:
        """Arguments of :func:`~linksim.tasks.load_or_train_classifier` from the context (see the module doc)."""
        extra = context.extra or {}
        labels = extra.get("train_labels")
        if labels is None:
            raise ValueError(f"{self.label}: SD-JSCC needs the downstream classifier, hence the training labels; "
                             f"the scheme context has none (context.extra['train_labels'] is missing; the "
                             f"data set must be labelled)")
        labels = np.asarray(labels)
        if len(labels) != len(context.train_images):
            raise ValueError(f"{self.label}: context.extra['train_labels'] has {len(labels)} labels for "
                             f"{len(context.train_images)} training images")
        num_classes = extra.get("num_classes")
        num_classes = int(np.max(labels)) + 1 if num_classes is None else int(num_classes)
        # the scenario's task.classifier options (runner: extra["task"]), or extra["classifier_config"]
        config = extra.get("classifier_config")
        if config is None:
            config = (extra.get("task") or {}).get("classifier")
        return {"dataset_spec": context.dataset_spec, "image_shape": tuple(context.image_shape),
                "num_classes": num_classes, "x_train": context.train_images, "y_train": labels,
                "seed": int(context.seed), "config": config}

    def _classifier_key(self, request: dict) -> str:
        from linksim.tasks.classifier import classifier_spec

        return spec_key(classifier_spec(dataset_spec=request["dataset_spec"], image_shape=request["image_shape"],
                                        num_classes=request["num_classes"], seed=request["seed"],
                                        config=request["config"]))

    def store_spec(self, context: SchemeContext) -> dict:
        """The stage-2 spec: stage 1's spec, the classifier's store key, the SD-JSCC and fine-tuning options."""
        fc = self.finetune_config
        request = self._classifier_request(context)
        return {"scheme": self.stage2_name, "format": 1,
                "stage1": self.stage1_scheme().store_spec(context),
                "classifier": {"key": self._classifier_key(request), "num_classes": request["num_classes"]},
                "semantic": dict(self.semantic_config),
                "finetune": {"epochs": fc.epochs, "learning_rate": fc.learning_rate,
                             "steps_per_epoch": fc.steps_per_epoch, "batch_size": fc.batch_size,
                             "patience": fc.patience, "lr_patience": fc.lr_patience,
                             "val_fraction": fc.val_fraction, "snr_train_db": fc.snr_train_db,
                             "loss": "sdjscc_semantic" + ("+mse" if self.semantic_config["mse_weight"] else "")}}

    def semantic_loss(self, classifier, context: SchemeContext) -> SemanticLoss:
        """Eq. 13 on ``classifier``'s ``feature_layer``, with calibrated weights when asked."""
        sc = self.semantic_config
        if not self.gsw:
            return SemanticLoss(classifier, sc["feature_layer"], gsw=False, mse_weight=sc["mse_weight"])
        calib = None
        if sc["weights_from"] == "calibration":
            # training part of the split train_jscc uses: the validation images stay unseen
            tr_idx, _ = _split(len(context.train_images), self.finetune_config.val_fraction, int(context.seed))
            calib = np.asarray(context.train_images, np.float32)[tr_idx[:sc["calibration_size"]]]
        probe = SemanticLoss(classifier, sc["feature_layer"], gsw=False)       # only to count the maps
        r = float(probe.num_feature_maps) if sc["r"] is None else sc["r"]
        return SemanticLoss(classifier, sc["feature_layer"], gsw=True, weights_from=sc["weights_from"],
                            calibration_images=calib, tau=sc["tau"], r=r, classes=sc["classes"],
                            mse_weight=sc["mse_weight"])

    def train(self, context: SchemeContext, model, loss: SemanticLoss | None = None) -> dict:
        """Stage 2: fine-tune ``model`` (holding the stage-1 weights) with ``loss``; returns the history.

        ``loss`` defaults to :meth:`semantic_loss` on the scenario's classifier.
        """
        import sionna.phy

        if loss is None:
            from linksim.tasks import load_or_train_classifier

            classifier, _ = load_or_train_classifier(context.store, progress=context.progress,
                                                     train_missing=context.train_missing,
                                                     **self._classifier_request(context))
            loss = self.semantic_loss(classifier, context)

        entry = context.store.entry(self.store_name(), self.store_spec(context))
        self.finetune_config.seed = int(context.seed)
        keras.utils.set_random_seed(int(context.seed))
        sionna.phy.config.seed = int(context.seed)
        return train_jscc(model, context.train_images, self.finetune_config, loss_fn=loss,
                          checkpoint_dir=entry.checkpoint_dir, progress=context.progress,
                          desc=f"{self.label} (stage 2: semantic fine-tuning)")

    def prepare(self, context: SchemeContext) -> None:
        """Load the fine-tuned model, or run stage 1 (load or train) and stage 2 and store the result.

        Raises
        ------
        ValueError
            Without ``context.extra["train_labels"]``; when a model is missing and
            ``context.train_missing`` is False (run ``linksim train`` first).
        """
        from linksim.tasks import load_or_train_classifier

        self.context = context
        spec = self.store_spec(context)
        model, entry = self._load_stored(context, spec)
        if model is not None:
            card = entry.card()
            self.semantic_weights = card.get("semantic_weights")
            self.stage1_entry = context.store.find("deepjscc", spec["stage1"])
        else:
            self._require_training(context)
            request = self._classifier_request(context)
            classifier, self.classifier_entry = load_or_train_classifier(
                context.store, progress=context.progress, train_missing=context.train_missing, **request)
            stage1 = self.stage1_scheme()
            stage1.prepare(context)                              # stage 1: from the store, or trained and stored
            self.stage1_entry = stage1.entry
            model = self.build_model(context)
            model.set_weights(stage1.model.get_weights())
            loss = self.semantic_loss(classifier, context)
            self.semantic_weights = None if loss.weights is None else [float(v) for v in loss.weights.numpy()]
            history = self.train(context, model, loss)
            best = history["best_epoch"]
            entry = context.store.save(self.store_name(), spec, model, history, {
                **self._card_facts(context, history),
                "final_val_loss": history["val_loss"][best - 1] if best else None,
                "semantic_loss": loss.get_config(), "semantic_weights": self.semantic_weights,
                "stage1_model": str(stage1.entry.path), "classifier_model": str(self.classifier_entry.path),
                "latent_bits_per_image": 2 * int(context.channel_uses)})
        self._bind(context, model, entry)

    def describe(self) -> dict:
        d = super().describe()
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
