"""What every built-in component takes, importable without TensorFlow.

``linksim validate`` must answer in well under a second, so it cannot import the
modules that define the components (they import TensorFlow and Sionna).  This
module is the option table those modules are checked against: for every name the
registries hold after :func:`linksim.registry._load_builtin_components`, the
options the component takes and a check of each option's value, written with the
same rules (and, where it matters, the same words) as the component's constructor.

The table and the classes cannot drift apart silently:
``tests/unit/test_catalog.py`` imports the real registries and fails when a
registered name is missing here (or here but not registered), when the option
names differ from :meth:`linksim.registry.Registry.options`, or when a probe value
that the real constructor refuses passes the check here.

A component a plug-in registers is not in this table; the scenario validator then
falls back to the registry itself (which imports TensorFlow).

Checks are plain functions ``check(value) -> str | None``: the problem in words
(``"must be a positive integer (got -1)"``) or None.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

__all__ = ["Spec", "CATALOG", "METRIC_TASKS", "builtin_names", "check_params", "check_scheme",
           "check_channel", "check_dataset", "check_dataset_options", "build_dataset", "dataset_counts", "check_task", "dataset_image_shape", "MAX_SEED"]

#: The largest seed linksim accepts: numpy's ``default_rng`` and ``RandomState`` take
#: seeds below 2**32; TensorFlow's op seeds are int64.
from linksim.limits import MAX_EPOCHS, MAX_GRID_POINTS, MAX_SEED  # noqa: E402 - one definition

Check = Callable[[Any], Optional[str]]
Problem = tuple[tuple, str]   # (path relative to the component's mapping, message)


# --------------------------------------------------------------------------- value checks

def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(minimum: int | None = None, maximum: int | None = None, allow_none: bool = False) -> Check:
    """An integer in [minimum, maximum] (or null with ``allow_none``)."""
    if minimum == 1 and maximum is None:
        what = "a positive integer"
    elif maximum is None:
        what = f"an integer >= {minimum}" if minimum is not None else "an integer"
    else:
        what = f"an integer in {minimum}..{maximum}"
    what += " or null" if allow_none else ""

    def check(v):
        if v is None and allow_none:
            return None
        if not _is_int(v) or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            return f"must be {what} (got {v!r})"
        return None
    return check


def number(minimum: float | None = None, maximum: float | None = None, positive: bool = False,
           below: float | None = None, allow_none: bool = False, what: str | None = None) -> Check:
    """A finite number (never NaN or infinity), optionally > 0, >= minimum, <= maximum, < below."""
    if what is None:
        parts = []
        if positive:
            parts.append("> 0")
        if minimum is not None:
            parts.append(f">= {minimum}")
        if maximum is not None:
            parts.append(f"<= {maximum}")
        if below is not None:
            parts.append(f"< {below}")
        what = "a finite number" + (" " + " and ".join(parts) if parts else "")
    what += " or null" if allow_none else ""

    def check(v):
        if v is None and allow_none:
            return None
        if not _is_real(v) or not math.isfinite(v) or (positive and not v > 0) \
                or (minimum is not None and v < minimum) or (maximum is not None and v > maximum) \
                or (below is not None and not v < below):
            return f"must be {what} (got {v!r})"
        return None
    return check


def boolean(allow_none: bool = False) -> Check:
    def check(v):
        if (v is None and allow_none) or isinstance(v, bool):
            return None
        return f"must be true or false{' or null' if allow_none else ''} (got {v!r})"
    return check


def choice(*allowed) -> Check:
    """One of ``allowed`` (a bool only matches a bool, 1 is not true)."""
    shown = ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)

    def check(v):
        for a in allowed:
            try:  # as linksim.codecs.base.check_choice
                if isinstance(v, bool) == isinstance(a, bool) and bool(v == a):
                    return None
            except Exception:  # noqa: BLE001 - a value that does not compare
                pass
        return f"must be one of {shown} (got {v!r})"
    return check


def string(allow_none: bool = True) -> Check:
    def check(v):
        if isinstance(v, str) or (v is None and allow_none):
            return None
        return f"must be a string (got {v!r})"
    return check


def anything(v) -> None:
    return None


def int_list(length: int) -> Check:
    def check(v):
        if not isinstance(v, (list, tuple)) or len(v) != length or not all(_is_int(f) and f > 0 for f in v):
            return f"must be a list of {'four' if length == 4 else length} positive integers (got {v!r})"
        return None
    return check


def size_pair(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v):
        if max(v) > 8192:
            return f"must be [H, W] with H, W <= 8192 pixels (got {v!r})"
        return None
    return f"must be [H, W], two positive integers in pixels (got {v!r})"


def snr_train(v) -> str | None:
    if _is_real(v) and math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_real(x) and math.isfinite(x) for x in v) \
            and v[0] <= v[1]:
        return None
    return f"must be a finite number or [lo, hi] with lo <= hi (got {v!r})"


def seed(v) -> str | None:
    if _is_int(v) and 0 <= v <= MAX_SEED:
        return None
    return f"must be an integer in 0..{MAX_SEED} (got {v!r})"


def stage_name(v) -> str | None:
    if v is None or (isinstance(v, str) and v.replace("_", "").isalnum()):
        return None
    return f"must be letters, digits and underscores (got {v!r})"


def constellation(v) -> str | None:
    bad = f"must be null (follow the scheme), 'gaussian', or a list of [re, im] points (got {v!r})"
    if v is None or v == "gaussian":
        return None
    if not isinstance(v, (list, tuple)) or len(v) < 2:
        return bad
    try:
        pts = [complex(float(p[0]), float(p[1])) for p in v]
    except (TypeError, ValueError, IndexError, KeyError):
        return bad
    if not all(math.isfinite(p.real) and math.isfinite(p.imag) for p in pts):
        return bad
    # the QF relay quantises each real dimension to the constellation's values
    if len({p.real for p in pts}) < 2 or len({p.imag for p in pts}) < 2:
        return bad
    return None


def ldpc_rate(v) -> str | None:
    if str(v) in LDPC_80211N_RATES and not isinstance(v, (bool, list, dict)):
        return None
    return f"must be one of {', '.join(LDPC_80211N_RATES)} (got {v!r})"


def hops_check(v) -> str | None:
    """A scenario's ``hops``: an integer in 1..64, or a list of them (a sweep, :mod:`linksim.channel_sweep`;
    the layer takes one integer, :func:`check_channel` checks a list before splitting it into chains)."""
    if isinstance(v, list):
        if not v:
            return "must be a number of hops, or a non-empty list of them (a sweep)"
        bad = next(filter(None, (integer(1, 64)(h) for h in v)), None)
        if bad is None and len(set(v)) != len(v):
            return f"lists a number of hops twice (got {v!r}); each chain is run once"
        return bad
    return integer(1, 64)(v)


def relay_params_check(v) -> str | None:
    return None if v is None or isinstance(v, dict) else f"must be a mapping of relay options (got {v!r})"


# --------------------------------------------------------------------------- the table

@dataclass
class Spec:
    """The options of one registered component.

    Attributes
    ----------
    options : dict of {name: check}
        Every option, in the constructor's order.
    required : tuple of str
        Options without a default.
    task : str or None
        Metrics only: the task a task metric needs.
    """

    options: dict = field(default_factory=dict)
    required: tuple = ()
    task: str | None = None
    #: pure ``**options`` factory: :meth:`Registry.options` is None (every option refused here)
    open: bool = False
    #: checks that need several options together: ``cross(params) -> iterator of (path, message)``
    cross: Optional[Callable] = None


# ---- shared groups
GAIN_MODES = ("header", "genie", "unknown")
TRAIN_CHANNELS = ("awgn", "scenario")
QUANTIZERS = (None, "binary", "onoff")
DIGITAL_QUANTIZERS = ("binary", "onoff")
FEATURE_LAYERS = ("conv1", "conv2", "conv3", "conv4")
WEIGHTS_FROM = ("calibration", "batch")
CLASS_AVERAGING = ("all", "predicted")
CN_UPDATES = ("boxplus-phi", "boxplus", "minsum", "offset-minsum")
LDPC_80211N_RATES = ("1/2", "2/3", "3/4", "5/6")
CRCS = ("CRC24A", "CRC24B", "CRC24C", "CRC16", "CRC11", "CRC6")
BPG_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
               "placebo")
GSW_DEFAULTS = {"tau": 3000.0, "r": None, "weights_from": "calibration", "classes": "all", "calibration_size": 1000}

SCHEME_OPTIONS = {
    "snr_train_db": snr_train, "batch_size": integer(1), "patience": integer(1), "lr_patience": integer(1),
    "val_fraction": number(what="a number in (0, 0.5)", positive=True, below=0.5), "jit_compile": boolean(),
    "train_channel": lambda v: None if isinstance(v, dict) or (isinstance(v, str) and v in TRAIN_CHANNELS) else (
        f"must be one of {', '.join(TRAIN_CHANNELS)} or a channel mapping {{type: ..., **options}} (got {v!r})"),
    "train_seed": seed, "spread": boolean(), "label": string(),
}
#: Training epochs: at most limits.MAX_EPOCHS (a typo guard).
EPOCHS = integer(1, MAX_EPOCHS)
FIRST_STAGE = {"epochs": EPOCHS, "learning_rate": number(positive=True, allow_none=True),
               "steps_per_epoch": integer(1, allow_none=True)}
DEEPJSCC_ARCH = {"filters": int_list(4), "kernel_size": integer(1), "quantizer": choice(*QUANTIZERS),
                 "snr_side_info": boolean()}
PCA_ARCH = {"filters": int_list(4), "kernel_size": integer(1), "snr_adaptive": boolean()}
MCR2_FEATURES = ("received", "transmitted")
MCR2_ARCH = {"filters": int_list(4), "kernel_size": integer(1), "gate": boolean(), "groups": integer(1),
             "always_on": integer(1), "gate_units": integer(1), "tau_start": number(positive=True),
             "tau_end": number(positive=True)}
MCR2_LOSS = {"beta": number(minimum=0), "eps2": number(positive=True), "features": choice(*MCR2_FEATURES),
             "gate_lambda": number(minimum=0)}
SEMANTIC = {"feature_layer": choice(*FEATURE_LAYERS), "tau": number(positive=True),
            "r": number(positive=True, allow_none=True), "weights_from": choice(*WEIGHTS_FROM),
            "classes": choice(*CLASS_AVERAGING), "calibration_size": integer(1), "mse_weight": number(minimum=0)}
FINETUNE = {"finetune_epochs": EPOCHS, "finetune_learning_rate": number(positive=True, allow_none=True),
            "finetune_steps_per_epoch": integer(1, allow_none=True)}
SDJSCC = {**SCHEME_OPTIONS, **{**DEEPJSCC_ARCH, "quantizer": choice(*DIGITAL_QUANTIZERS)}, **FIRST_STAGE,
          **SEMANTIC, **FINETUNE}
SEPARATION = {"codec": anything, "channel_code": anything, "modulation": anything,
              "fallback": choice("mean", "gray", "black"), "on_block_error": choice("fallback", "decode_anyway"),
              "label": string()}
DATASET_SIZE = {"image_size": size_pair, "pad_to": size_pair, "channels": choice(None, 1, 3)}
PUBLISHED = {"path": string(), "download": boolean(), **DATASET_SIZE}

# ---- checks of several options together (``Spec.cross``)
def _jscc_cross(p: dict) -> Iterator[Problem]:
    tc = p.get("train_channel")
    if isinstance(tc, dict):  # a channel to train through: checked as the scenario's channel
        from linksim.channel_sweep import is_sweep

        if is_sweep(tc):
            yield ("train_channel",), ("train_channel is one chain: its hops and relay options are single values, "
                                       "not lists (a model is trained through one channel)")
            return
        if tc.get("type") not in CATALOG["channels"]:
            yield ("train_channel", "type"), (f"train_channel's type must be a channel: one of "
                                              f"{_allowed(CATALOG['channels'])} (got {tc.get('type')!r})")
        for sub, msg in check_channel(tc):
            yield ("train_channel",) + sub, msg
        if "hop_snr_db" in tc:
            yield ("train_channel", "hop_snr_db"), ("the training SNR is snr_train_db (one value for every hop); "
                                                    "hop_snr_db does not apply to train_channel")
        relays = tc.get("relay", "af")
        hops = tc.get("hops", 2) if tc.get("type") == "multihop" else 1
        if isinstance(hops, int) and hops > 1:
            if "df" in (relays if isinstance(relays, list) else [relays]):
                yield ("train_channel", "relay"), ("a JSCC model cannot be trained through decode-and-forward relays "
                                                   "(they are not differentiable); train over one hop (awgn) and "
                                                   "evaluate on the DF chain, or train through af / qf relays")
            s = p.get("snr_train_db")
            if isinstance(s, (list, tuple)) and len(s) == 2 and s[0] != s[1]:
                yield ("snr_train_db",), (f"training through a relay chain (train_channel) takes one snr_train_db, "
                                          f"not a range (got {s!r}): a chain takes one SNR per hop")
    if p.get("spread") is True and tc not in (None, "awgn"):
        yield ("spread",), ("spread applies at evaluation; a model trained through a relay chain "
                            "(train_channel: scenario or a channel) saw it without spreading: use one or the other")


CSI_MODES = ("perfect", "pilots", "none")


def coherence_check(v):
    """A fading channel's ``coherence``: image, symbol or a positive integer (symbols per coefficient)."""
    if v in ("image", "symbol") or (_is_int(v) and v >= 1):
        return None
    return f"must be image, symbol or a positive integer (symbols per fading coefficient) (got {v!r})"


def _fading_cross(p: dict) -> Iterator[Problem]:
    if p.get("csi") == "pilots" and p.get("coherence", "image") in ("symbol", 1):
        yield ("pilots",), ("csi: pilots needs a coherence block longer than one symbol (coherence: image or "
                            "N >= 2); a pilot per symbol leaves no channel use for data")


def _mcr2_arch_cross(p: dict) -> Iterator[Problem]:
    g, a = p.get("groups", 8), p.get("always_on", 2)
    if isinstance(g, int) and isinstance(a, int) and a > g:
        yield ("always_on",), f"always_on must be at most groups ({g}); got {a}"


def _mcr2_scheme_cross(p: dict) -> Iterator[Problem]:
    yield from _jscc_cross(p)
    yield from _mcr2_arch_cross(p)
    if "gate_lambda" in p and p.get("gate") is not True:
        yield ("gate_lambda",), "gate_lambda is the cost of the gate's channel uses: it needs gate: true"


def _nogsw_cross(p: dict) -> Iterator[Problem]:
    yield from _jscc_cross(p)
    odd = sorted(str(k) for k, v in p.items() if k in GSW_DEFAULTS and v != GSW_DEFAULTS[k])
    if odd:
        yield (odd[0],), (f"SD-JSCC without the GSW module (every semantic weight 1): option(s) "
                          f"{', '.join(odd)} do not apply")


def _semantic_cross(p: dict) -> Iterator[Problem]:
    if p.get("gsw", True) is False:
        yield from _nogsw_cross({k: v for k, v in p.items() if k != "spread"})


def _jpeg_cross(p: dict) -> Iterator[Problem]:
    if p.get("optimize") is True and p.get("headers") == "abbreviated":
        yield ("optimize",), ("jpeg: optimize must be False with headers: abbreviated (the receiver rebuilds the "
                              "standard Huffman tables); allowed: optimize False with abbreviated, True or False "
                              "with full")


def _ldpc5g_cross(p: dict) -> Iterator[Problem]:
    k, n = p.get("k", 1458), p.get("n", 1944)
    crc = p.get("crc", "CRC24B")
    crc_len = {None: 0, "CRC6": 6, "CRC11": 11, "CRC16": 16}.get(crc, 24)
    # Sionna's LDPC5GEncoder: k <= 8448, k < n, rate k/n >= 1/5 and k > the CRC
    if not (k <= 8448 and k < n and 5 * k >= n and k > crc_len):
        yield ("k",), (f"ldpc5g: unsupported (k, n) = ({k}, {n}): 5G LDPC needs k <= 8448, k < n, "
                       f"k/n >= 1/5 and k longer than the CRC ({crc_len} bits)")


def _pad_cross(name: str):
    def cross(p: dict) -> Iterator[Problem]:
        size = p.get("image_size") or (NATIVE_SHAPES[name][:2] if name in NATIVE_SHAPES else None)
        pad = p.get("pad_to")
        if pad is not None and size is not None and (pad[0] < size[0] or pad[1] < size[1]):
            yield ("pad_to",), (f"pad_to {list(pad)} is smaller than the images ({size[0]}x{size[1]}); pad_to "
                                "must be at least the image size (use image_size to shrink the images)")
    return cross


#: Native image shape (H, W, C) of the built-in data sets with a fixed one.
NATIVE_SHAPES = {"cifar10": (32, 32, 3), "embedded": (28, 28, 1), "fashion_mnist": (28, 28, 1),
                 "fashion_mnist_small": (28, 28, 1), "mnist": (28, 28, 1)}

#: The built-in components, by the registry title of :data:`linksim.registry.ALL`.
CATALOG: dict[str, dict[str, Spec]] = {
    "schemes": {
        "deepjscc": Spec({**SCHEME_OPTIONS, **DEEPJSCC_ARCH, **FIRST_STAGE}, cross=_jscc_cross),
        "deepjscc_pca": Spec({**SCHEME_OPTIONS, **PCA_ARCH, **FIRST_STAGE}, cross=_jscc_cross),
        "mcr2_jscc": Spec({**{k: v for k, v in SCHEME_OPTIONS.items() if k != "spread"}, **MCR2_ARCH, **MCR2_LOSS,
                           "subspace_dim": integer(1), "classifier_images": integer(1), **FIRST_STAGE},
                          cross=_mcr2_scheme_cross),
        "jscc": Spec({"architecture": anything, "stages": anything, **SCHEME_OPTIONS},
                     required=("architecture", "stages"), cross=_jscc_cross),
        "linear": Spec({"design_snr_db": number(allow_none=True, what="a finite number (Es/N0 in dB)"),
                        "spread": boolean(), "gain": choice(*GAIN_MODES), "label": string()}),
        "sdjscc": Spec(dict(SDJSCC), cross=_jscc_cross),
        "sdjscc_nogsw": Spec(dict(SDJSCC), cross=_nogsw_cross),
        "separation": Spec(dict(SEPARATION), required=("codec",)),
        "sscc": Spec(dict(SEPARATION), required=("codec",)),
        "uncoded": Spec({"gain": choice(*GAIN_MODES), "label": string()}),
    },
    "architectures": {
        "deepjscc": Spec(dict(DEEPJSCC_ARCH)),
        "deepjscc_pca": Spec(dict(PCA_ARCH)),
        "mcr2": Spec(dict(MCR2_ARCH), cross=_mcr2_arch_cross),
    },
    "losses": {
        "dhd": Spec({"lam": number(minimum=0)}),
        "gate_rate": Spec({"lam": number(minimum=0)}),
        "mcr2": Spec({"eps2": number(positive=True), "features": choice(*MCR2_FEATURES)}),
        "log_mse": Spec(),
        "mse": Spec(),
        "semantic": Spec({"feature_layer": SEMANTIC["feature_layer"], "gsw": boolean(),
                          **{k: v for k, v in SEMANTIC.items() if k != "feature_layer"}}, cross=_semantic_cross),
    },
    "codecs": {
        "bpg": Spec({"subsampling": choice("4:2:0", "4:2:2", "4:4:4"), "headers": choice("full", "abbreviated"),
                     "preset": choice(*BPG_PRESETS)}),
        "jpeg": Spec({"subsampling": choice("4:2:0", "4:2:2", "4:4:4"), "headers": choice("full", "abbreviated"),
                      "optimize": choice(False, True)}, cross=_jpeg_cross),
        "jpeg2000": Spec({"quality_mode": choice("rates", "dB"), "num_resolutions": choice(None, 1, 2, 3, 4, 5, 6)}),
        "webp": Spec({"method": choice(0, 1, 2, 3, 4, 5, 6)}),
    },
    "channel codes": {
        "ideal": Spec(),
        "ldpc5g": Spec({"k": integer(1), "n": integer(1), "crc": choice(None, *CRCS), "num_iter": integer(1),
                        "cn_update": choice(*CN_UPDATES), "early_stop": boolean()}, cross=_ldpc5g_cross),
        "ldpc_80211n": Spec({"n": choice(1944), "rate": ldpc_rate, "num_iter": integer(1),
                             "cn_update": choice(*CN_UPDATES), "early_stop": boolean()}),
        "none": Spec({"n": integer(1)}),
    },
    "modulations": {
        "qam": Spec({"num_bits_per_symbol": choice(2, 4, 6, 8), "demapping_method": choice("app", "maxlog")}),
    },
    "channels": {
        "awgn": Spec(open=True),
        "rayleigh": Spec({"coherence": coherence_check, "k_factor": number(minimum=0), "csi": choice(*CSI_MODES),
                          "pilots": integer(1)}, cross=_fading_cross),
        "multihop": Spec({"hops": integer(1, 64), "relay": anything, "relay_params": relay_params_check,
                          "compensate_gain": boolean(), "hop": anything}),
    },
    "relays": {
        "af": Spec({"gain": choice("fixed", "measured")}),
        "df": Spec({"regenerate": choice(None)}),
        "qf": Spec({"bits": integer(1, 16), "clip": number(positive=True, allow_none=True),
                    "straight_through": boolean(), "constellation": constellation}, required=("bits",)),
    },
    "datasets": {
        "cifar10": Spec(dict(PUBLISHED), cross=_pad_cross("cifar10")),
        "embedded": Spec(dict(DATASET_SIZE), cross=_pad_cross("embedded")),
        "fashion_mnist": Spec(dict(PUBLISHED), cross=_pad_cross("fashion_mnist")),
        "fashion_mnist_small": Spec(dict(DATASET_SIZE), cross=_pad_cross("fashion_mnist_small")),
        "image_folder": Spec({"path": string(allow_none=False),
                              "test_fraction": number(minimum=0, maximum=1, what="a number in [0, 1]"),
                              "split_seed": seed, **DATASET_SIZE}, required=("path",),
                             cross=_pad_cross("image_folder")),
        "mnist": Spec(dict(PUBLISHED), cross=_pad_cross("mnist")),
    },
    "metrics": {name: Spec() for name in ("ber", "bler", "bpp", "channel_uses", "decode_failures", "ms_ssim",
                                          "psnr", "ssim")},
    "tasks": {
        "classification": Spec({"classifier": anything}),
        "hashing": Spec({"hash": anything}),
    },
    "plots": {name: Spec() for name in ("accuracy_vs_rate", "accuracy_vs_snr", "ber_vs_snr", "bler_vs_snr",
                                        "bpp_vs_snr", "examples", "ms_ssim_vs_snr", "psnr_vs_rate", "psnr_vs_snr",
                                        "ssim_vs_snr", "table")},
}
CATALOG["metrics"].update({"accuracy": Spec(task="classification"), "f1": Spec(task="classification")})
CATALOG["metrics"].update({"lpips": Spec(), "lpips_vgg": Spec()})  # linksim/lpips.py
CATALOG["plots"]["lpips_vs_snr"] = Spec()
CATALOG["plots"]["lpips_vgg_vs_snr"] = Spec()
CATALOG["plots"].update({name: Spec() for name in ("hash_cos_vs_snr", "hash_hamming_norm_vs_snr",
                                                   "retrieval_map_vs_snr")})
#: ``<metric>_vs_hops`` (linksim.plotting._vs_hops): a sweep over the number of hops
CATALOG["plots"].update({f"{m}_vs_hops": Spec() for m in ("psnr", "ssim", "lpips", "accuracy", "hash_cos",
                                                           "hash_hamming_norm", "retrieval_map")})
CATALOG["metrics"]["used_channel_uses"] = Spec()
CATALOG["metrics"]["pilot_channel_uses"] = Spec()
CATALOG["metrics"]["feature_accuracy"] = Spec(task="feature_classification")
CATALOG["tasks"]["feature_classification"] = Spec()
CATALOG["plots"].update({name: Spec() for name in ("feature_accuracy_vs_snr", "used_channel_uses_vs_snr",
                                                   "accuracy_vs_used_channel_uses")})
CATALOG["metrics"].update({name: Spec(task="hashing")
                           for name in ("hash_cos", "hash_hamming", "hash_hamming_norm", "retrieval_map")})

#: ``{metric: task}`` of the task metrics.
METRIC_TASKS = {n: s.task for n, s in CATALOG["metrics"].items() if s.task}

#: Options of ``task.classifier`` (:func:`linksim.tasks.classifier._resolve_config`).
CLASSIFIER_OPTIONS = {
    "width": integer(1), "dropout": number(minimum=0, below=1, what="a number in [0, 1)"), "batch_norm": boolean(),
    "epochs": EPOCHS, "batch_size": integer(1), "learning_rate": number(positive=True),
    "val_fraction": number(positive=True, below=0.5, what="a number in (0, 0.5)"), "patience": integer(1),
    "augment": boolean(), "hflip": boolean(), "train_seed": seed,
}


#: Options of ``task.hash`` (:data:`linksim.tasks.hashing.HASH_OPTIONS`).
HASH_OPTIONS = {
    "bits": integer(2, 1024), "width": integer(1),
    "epochs": integer(1), "batch_size": integer(1), "learning_rate": number(positive=True),
    "val_fraction": number(positive=True, below=0.5, what="a number in (0, 0.5)"), "patience": integer(1),
    "temperature": number(positive=True), "distill_weight": number(minimum=0), "quant_weight": number(minimum=0),
    "sigma": number(positive=True), "weak_scale": number(minimum=0, maximum=1, what="a number in [0, 1]"),
    "hflip": boolean(), "train_seed": seed, "top_n": integer(1),
}


def builtin_names(title: str) -> list[str]:
    """The built-in names of registry ``title`` (a key of :data:`linksim.registry.ALL`)."""
    return sorted(CATALOG[title])


# --------------------------------------------------------------------------- checks

def _allowed(names) -> str:
    return ", ".join(names) or "none"


def check_params(title: str, name: str, params: dict, what: str | None = None) -> Iterator[Problem]:
    """Problems of ``params`` for the built-in component ``name`` of registry ``title``.

    Unknown options (message as :func:`linksim.registry.check_known_options`), missing
    required ones, and each value against its check.
    """
    spec = CATALOG[title][name]
    kind = {"schemes": "scheme", "channels": "channel", "relays": "relay", "datasets": "dataset", "codecs": "codec",
            "channel codes": "channel code", "modulations": "modulation", "losses": "loss",
            "architectures": "architecture", "tasks": "task"}.get(title, title)
    what = what or f"{kind} '{name}'"
    if not isinstance(params, dict):
        yield (), f"{what}: options must be a mapping (got {params!r})"
        return
    unknown = sorted(set(params) - set(spec.options), key=str)
    if unknown and not spec.open:
        yield (unknown[0],), (f"{what} has no option(s) {', '.join(map(str, unknown))} "
                              f"(allowed: {_allowed(spec.options)})")
        return
    if unknown and spec.open and params:
        yield (unknown[0],), f"{what} takes no options (got {', '.join(map(str, unknown))})"
        return
    for r in spec.required:
        if r not in params:
            yield (), f"{what} needs the option {r} (its options: {_allowed(spec.options)})"
            return
    bad = False
    for key, value in params.items():
        problem = spec.options[key](value)
        if problem:
            bad = True
            yield (key,), f"{what}: {key} {problem}"
    if spec.cross is not None and not bad:
        yield from spec.cross(params)


def _sub_component(title: str, spec, path: tuple, what: str) -> Iterator[Problem]:
    """A ``{type: name, **options}`` sub-component (codec, channel code, modulation, architecture, loss)."""
    if not isinstance(spec, dict) or "type" not in spec:
        yield path, f"{what} must be a mapping {{type: <name>, ...options}} (got {spec!r})"
        return
    name = spec["type"]
    if name not in CATALOG[title]:
        return   # a plug-in's name: the registry checks it (scenario.py)
    params = {k: v for k, v in spec.items() if k != "type"}
    for sub, msg in check_params(title, name, params):
        yield path + sub, msg


def code_length(spec: dict | None) -> int | None:
    """The codeword length n of a channel-code spec (None for the ideal code or a plug-in's)."""
    spec = spec or {"type": "ldpc_80211n", "n": 1944}
    if spec.get("type") == "ldpc_80211n":
        return 1944
    if spec.get("type") == "ldpc5g":
        n = spec.get("n", 1944)
        return n if _is_int(n) else None
    if spec.get("type") == "none":
        n = spec.get("n", 8)
        return n if _is_int(n) else None
    return None


def check_scheme(name: str, params: dict, channel_uses: list[int] | None = None) -> Iterator[Problem]:
    """Every problem the constructor of built-in scheme ``name`` would raise, and a rate too small for its code.

    Paths are relative to the scheme's entry (``("codec", "headers")``).
    """
    params = {k: v for k, v in params.items() if k != "type"}
    problems = list(check_params("schemes", name, params))
    if problems:
        yield from problems
        return
    p = params
    if name == "jscc":
        yield from _check_jscc(p)
    arch = p.get("architecture") if name == "jscc" else p if name == "mcr2_jscc" else None
    if isinstance(arch, dict) and (name == "mcr2_jscc" or arch.get("type") == "mcr2") and arch.get("gate") is True:
        g = arch.get("groups", 8)
        for k in channel_uses or []:
            if _is_int(g) and g > 0 and k % g:
                where = ("architecture", "groups") if name == "jscc" else ("groups",)
                yield where, (f"mcr2: {k} channel uses per image are not a multiple of groups ({g}): the gate sends "
                              f"whole groups of k / groups symbols; choose groups dividing k")
    if name in ("separation", "sscc"):
        yield from _sub_component("codecs", p["codec"], ("codec",), "codec")
        code = p.get("channel_code")
        if code is not None:
            yield from _sub_component("channel codes", code, ("channel_code",), "channel_code")
        mod = p.get("modulation")
        if mod is not None:
            yield from _sub_component("modulations", mod, ("modulation",), "modulation")
        code = code or {"type": "ldpc_80211n"}
        mod = mod if isinstance(mod, dict) else {"type": "qam", "num_bits_per_symbol": 4}
        m = mod.get("num_bits_per_symbol", 4) if mod.get("type") == "qam" else None
        m = m if _is_int(m) and m > 0 else None
        n_c = code_length(code if isinstance(code, dict) else None)
        for k in channel_uses or []:
            if m and n_c and k * m < n_c:
                need = -(-n_c // m)
                yield (), (f"{k} channel uses per image cannot carry one codeword of {n_c} bits with {m} bits "
                           f"per symbol (needs at least {need} channel uses); raise rate.channel_uses / "
                           f"rate.bandwidth_ratio or use a shorter code")
                break


def _check_jscc(p: dict) -> Iterator[Problem]:
    arch = p["architecture"]
    if not isinstance(arch, dict) or "type" not in arch:
        yield ("architecture",), (f"architecture must be {{type: ..., **options}} (registered architectures: "
                                  f"{_allowed(CATALOG['architectures'])})")
        return
    yield from _sub_component("architectures", arch, ("architecture",), "architecture")
    stages = p["stages"]
    if not isinstance(stages, list) or not stages:
        yield ("stages",), "stages must be a non-empty list of {losses: [...], epochs: ...}"
        return
    stage_opts = {"losses": anything, "epochs": EPOCHS, "learning_rate": number(positive=True, allow_none=True),
                  "steps_per_epoch": integer(1, allow_none=True), "name": stage_name}
    for i, st in enumerate(stages):
        path = ("stages", i)
        if not isinstance(st, dict):
            yield path, f"stage {i + 1} must be a mapping {{losses: [...], epochs: ...}} (got {st!r})"
            continue
        unknown = sorted(set(st) - set(stage_opts), key=str)
        if unknown:
            yield path + (unknown[0],), (f"stage {i + 1} has no option(s) {', '.join(map(str, unknown))} "
                                         f"(allowed: {_allowed(stage_opts)})")
            continue
        if "losses" not in st:
            yield path, f"stage {i + 1} needs losses: a non-empty list of {{type: <loss>, weight: ...}}"
            continue
        for key, value in st.items():
            problem = stage_opts[key](value)
            if problem:
                yield path + (key,), f"stage {i + 1}: {key} {problem}"
        if i == 0 and st.get("name") not in (None, arch.get("type")):
            yield path + ("name",), (f"the first stage is stored under the architecture's name "
                                     f"({arch.get('type')}); it takes no name (got {st['name']!r})")
        losses = st["losses"]
        if not isinstance(losses, list) or not losses:
            yield path + ("losses",), (f"a stage's losses must be a non-empty list of {{type: <loss>, weight: ...}} "
                                       f"(registered losses: {_allowed(CATALOG['losses'])}); got {losses!r}")
            continue
        for j, loss in enumerate(losses):
            lp = path + ("losses", j)
            if not isinstance(loss, dict) or "type" not in loss:
                yield lp, (f"a stage loss must be {{type: <loss>, weight: ...}} (registered losses: "
                           f"{_allowed(CATALOG['losses'])}); got {loss!r}")
                continue
            loss = dict(loss)
            w = loss.pop("weight", 1.0)
            ramp = loss.pop("ramp_epochs", 0)
            if number(minimum=0)(w):
                yield lp + ("weight",), f"weight {number(minimum=0)(w)}"
            if integer(0)(ramp):
                yield lp + ("ramp_epochs",), f"ramp_epochs {integer(0)(ramp)}"
            yield from _sub_component("losses", loss, lp, "loss")


def check_relays(relay, relay_params, hops: int) -> Iterator[Problem]:
    """A multihop channel's relay names and relay options."""
    names = relay if isinstance(relay, list) else [relay] * max(hops - 1, 0)
    if isinstance(relay, list) and len(relay) != hops - 1:
        yield ("relay",), (f"relay must be one name for all relays or a list of hops - 1 = {hops - 1} "
                           f"name(s) (one per relay), got {len(relay)}: {relay!r}")
        return
    p = relay_params or {}
    if not isinstance(p, dict):
        return
    relay_names = set(CATALOG["relays"])
    keyed = any(k in relay_names for k in p)
    if keyed:
        stray = sorted((str(k) for k in p if k not in relay_names))
        if stray:
            yield ("relay_params",), (f"relay_params mixes relay names and options ({', '.join(stray)}); use "
                                      f"either options for every relay or a dict keyed by "
                                      f"{', '.join(sorted(relay_names))}")
            return
    for n in dict.fromkeys(names):
        if n not in CATALOG["relays"]:
            continue    # a plug-in's relay
        params = p.get(n) or {} if keyed else p
        if not isinstance(params, dict):
            yield ("relay_params", n), f"relay_params['{n}'] must be a mapping of options, got {params!r}"
            continue
        for sub, msg in check_params("relays", n, params):
            yield ("relay_params",) + (((n,) if keyed else ()) + sub), msg


def check_channel(spec: dict) -> Iterator[Problem]:
    """The scenario's ``channel`` mapping (without ``hop_snr_db``), built-in channels only.

    A sweep (``hops`` or a relay option given as a list, :mod:`linksim.channel_sweep`)
    is checked chain by chain; each problem is reported once.
    """
    from linksim.channel_sweep import chain_count, channel_variants, is_sweep, is_sweep_list

    if not (isinstance(spec, dict) and is_sweep(spec)):
        yield from _check_one_channel(spec)
        return
    hops_swept = isinstance(spec.get("hops"), list)
    swept_field = ("hops",) if hops_swept else ("relay_params",)
    if spec.get("type") != "multihop":
        yield swept_field, "only a multihop channel sweeps its hops or relay options"
        return
    problem = hops_check(spec["hops"]) if hops_swept else None
    if problem:
        yield ("hops",), problem
        return
    n_chains = chain_count(spec)
    if n_chains > MAX_GRID_POINTS:
        yield swept_field, f"the sweep makes {n_chains:,} chains, more than the grid limit of {MAX_GRID_POINTS:,}"
        return
    if hops_swept:
        for key, what in (("relay", "one relay name for every relay"), ("hop", "one hop mapping for every hop")):
            if isinstance(spec.get(key), list):
                yield (key,), (f"with a sweep over hops, {key} must be {what}, not a list of one per "
                               f"{'relay' if key == 'relay' else 'hop'} (the number of hops changes)")
                return
    params = spec.get("relay_params")
    if isinstance(params, dict) and any(k in CATALOG["relays"] and isinstance(v, dict)
                                        and any(is_sweep_list(x) for x in v.values()) for k, v in params.items()):
        yield ("relay_params",), ("a relay option given as a list sweeps it; that needs relay_params to hold the "
                                  "options of every relay, not a mapping keyed by relay name")
        return
    seen = set()
    for variant in channel_variants(spec):
        for problem in _check_one_channel(variant.spec):
            if problem not in seen:
                seen.add(problem)
                yield problem


def _check_one_channel(spec: dict) -> Iterator[Problem]:
    name = spec.get("type")
    params = {k: v for k, v in spec.items() if k not in ("type", "hop_snr_db")}
    if name not in CATALOG["channels"]:
        return
    problems = list(check_params("channels", name, params))
    if problems:
        yield from problems
        return
    if name != "multihop":
        return
    hops = params.get("hops", 2)
    if hops == 1 and ("relay" in params or "relay_params" in params):
        key = "relay" if "relay" in params else "relay_params"
        yield (key,), (f"a one-hop chain has no relay, so {key} does not apply; use hops >= 2 for a relay "
                       "chain, or leave it out")
        return
    yield from check_relays(params.get("relay", "af"), params.get("relay_params"), hops)
    hop = params.get("hop")
    if hop is None:
        return
    specs = hop if isinstance(hop, list) else [hop]
    if isinstance(hop, list) and len(hop) != hops:
        yield ("hop",), (f"hop must be a mapping {{type: <channel>, ...options}} for every hop, or a list of one "
                         f"per hop; got a list of {len(hop)} for {hops} hop(s)")
        return
    for j, h in enumerate(specs):
        path = ("hop",) + ((j,) if isinstance(hop, list) else ())
        if not isinstance(h, dict):
            continue
        if h.get("type") == "multihop":
            yield path + ("type",), ("a hop must be a one-hop channel (awgn, or a registered fading channel), "
                                     "not multihop")
            continue
        if h.get("type") in CATALOG["channels"]:
            for sub, msg in check_params("channels", h["type"], {k: v for k, v in h.items() if k != "type"}):
                yield path + sub, msg


def dataset_image_shape(name: str, params: dict) -> tuple | None:
    """The (H, W, C) images of a built-in data set, where known without reading it (else None)."""
    native = NATIVE_SHAPES.get(name)
    size = params.get("image_size")
    pad = params.get("pad_to")
    ch = params.get("channels")
    if native is None:
        if size is None:
            return None
        native = (size[0], size[1], ch or 3)
    h, w, c = native
    if size is not None:
        h, w = size
    if pad is not None:
        h, w = max(h, pad[0]), max(w, pad[1])
    return int(h), int(w), int(ch or c)


def check_dataset(name: str, params: dict) -> Iterator[Problem]:
    """A built-in data set's options, its path (a folder, not empty) and ``pad_to`` against the image size."""
    problems = list(check_dataset_options(name, params))
    if problems:
        yield from problems
        return
    _, problem = build_dataset(name, params)
    if problem is not None:
        yield (), problem


def check_dataset_options(name: str, params: dict) -> Iterator[Problem]:
    """A built-in data set's options and its ``path`` (exists; for an image folder, a folder, not empty)."""
    import os
    from pathlib import Path

    import linksim.data  # noqa: F401 - registers the data sets (no TensorFlow)

    problems = list(check_params("datasets", name, params))
    if problems:
        yield from problems
        return
    path = params.get("path")
    if path is not None:
        p = Path(os.path.expanduser(str(path)))
        if str(path).strip() == "":
            yield ("path",), "path is empty (give the data set's folder or file)"
            return
        if not p.exists():
            yield ("path",), f"path does not exist: {path}"
            return
        if name == "image_folder":
            if not p.is_dir():
                yield ("path",), (f"not a folder: {path} (dataset.params.path must be a folder of images, "
                                  "or of class sub-folders of images)")
                return
            try:
                with os.scandir(p) as entries:
                    empty = next(iter(entries), None) is None
            except OSError as exc:
                yield ("path",), f"cannot read the folder {path}: {exc.strerror}"
                return
            if empty:
                yield ("path",), (f"the folder {path} is empty (dataset.params.path must be a folder of images, "
                                  "or of class sub-folders of images)")


def build_dataset(name: str, params: dict) -> tuple[Any, str | None]:
    """``(data set, None)``, or ``(None, why)`` when it cannot be built from ``params``.

    The data sets import neither TensorFlow nor Sionna: the real one is built (it finds the files
    under ``path``, and an image folder reads its images' headers for ``pad_to``) without loading
    images.  Call after :func:`check_dataset_options`.
    """
    from linksim.data import DatasetError
    from linksim.registry import DATASETS

    try:
        return DATASETS._entries[name](**params), None
    except (DatasetError, ValueError, TypeError, OSError) as exc:
        return None, str(exc)


def dataset_counts(dataset) -> dict:
    """``{split: images}`` of a built data set where it can be counted without loading it (else left out).

    The embedded data set and image folders are counted; published data sets (CIFAR-10, MNIST, ...) are
    not (their files may be missing until the downloader runs): the run reports their sizes.
    """
    out = {}
    if hasattr(dataset, "keras_name"):
        return out  # a published data set: counting may read ~100 MB of files or start the downloader
    for split in ("test", "train"):
        try:
            out[split] = int(dataset.count(split))
        except Exception:   # noqa: BLE001 - files not there yet (downloaded at run time), unreadable, ...
            pass
    return out


def check_task(task: dict) -> Iterator[Problem]:
    """The scenario's ``task`` block: ``classifier`` and ``hash`` options."""
    for field_name, what, options in (("classifier", "classifier", CLASSIFIER_OPTIONS),
                                      ("hash", "hash", HASH_OPTIONS)):
        block = (task or {}).get(field_name)
        if block is None:
            continue
        if not isinstance(block, dict):
            yield (field_name,), f"must be a mapping of {what} options (got {block!r})"
            return
        unknown = sorted(set(block) - set(options), key=str)
        if unknown:
            yield (field_name, unknown[0]), (f"unknown {what} option(s) {', '.join(map(str, unknown))} "
                                             f"(allowed: {_allowed(options)})")
            return
        for key, value in block.items():
            problem = options[key](value)
            if problem:
                yield (field_name, key), f"{what} {key} {problem}"
