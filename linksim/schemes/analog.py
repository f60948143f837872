"""Analog references: uncoded transmission and the optimal linear code, with LMMSE receivers.

Two schemes without training (closed-form fits on the training images), the
floors a JSCC network must beat (issue 10):

- ``uncoded`` (:class:`UncodedScheme`, API :class:`UncodedCode`): zero-mean pixels
  straight onto the I and Q of the channel symbols, a per-pixel LMMSE receiver;
- ``linear`` (:class:`LinearScheme`, API :class:`LinearCode`): the principal
  components of the training images with the MSE-optimal power allocation, the
  full LMMSE (best affine) receiver.

Conventions
-----------
- Images ``x`` in [0, 1], ``n = H W C`` real values per image; ``k`` complex channel
  uses per image give ``2k`` real slots: slot ``j < k`` is the real part of symbol
  ``j``, slot ``k + j`` its imaginary part (real parts first, as DeepJSCC's
  :class:`~linksim.schemes.deepjscc_layers.PowerNormalization` does).
  ``mu`` is the per-pixel mean of the training images, ``x0 = x - mu``.
- Per-image power normalisation, like DeepJSCC: every image's ``k`` symbols have mean
  ``|x|^2 = 1`` exactly (energy ``k`` per image, ``k / 2`` per real slot on average);
  an image equal to ``mu`` sends zeros.  SNR is Es/N0, the complex noise variance is
  ``no = 10 ** (-snr_db / 10)``, ``sigma^2 = no / 2`` per real slot.
- The receivers use the ``no`` the channel *reports* (``out["no"]``: over a relay
  chain the destination-equivalent noise of the last segment), never a genie (unless
  ``gain: genie`` is set, below).
  Because the per-image gain ``g(x) = sqrt(k) / ||t(x)||`` (``t`` the slot values
  before normalisation) is a nonlinear function of the image, the receiver
  coefficients are second-order statistics of the *transmitted* signal ``s = g t``
  measured on the training images (``E[s]``, ``Cov(x0, s)``, ``Cov(s)``), so the
  affine LMMSE is exact for the training distribution.
- The outputs are clipped to [0, 1] (``decode(..., clip=True)``, the default; the
  closed-form predictions :meth:`UncodedCode.expected_mse` and
  :meth:`LinearCode.expected_mse` are those of the unclipped estimator on the
  training images, which clipping can only improve).

``uncoded``
    Slot ``j < n`` carries pixel ``j`` (flattened H, W, C order).  If ``2k > n`` the
    spare ``2k - n`` slots repeat the pixels of highest training variance, in
    decreasing variance order, cycling if ``2k - n > n``; pixel ``i`` is sent
    ``r_i >= 1`` times.  If ``2k < n`` only the ``2k`` highest-variance pixels are sent
    (in pixel order) and the others are decoded as ``mu``.  Receiver: the copies of a
    pixel carry the same value ``s_i``, so their mean ``ybar_i = s_i + wbar_i``
    (``Var wbar_i = sigma^2 / r_i``) is sufficient and by symmetry the LMMSE weights
    of the copies are equal; the affine LMMSE of ``x0_i`` from ``ybar_i`` is::

        x_hat_i = mu_i + c_i / (v_i + sigma^2 / r_i) * (ybar_i - m_i)
        c_i = Cov(x0_i, s_i),  v_i = Var(s_i),  m_i = E[s_i]

    with mean squared error ``Var(x_i) - c_i^2 / (v_i + sigma^2 / r_i)`` (and
    ``Var(x_i)`` for a pixel not sent).  (With ``E[s_i] = 0`` this is the linear form
    ``E[x0_i s_i] / (E[s_i^2] + sigma^2 / r_i) * ybar_i``.)

``linear``
    PCA of ``x0`` on the training images: eigenvalues ``lambda_1 >= lambda_2 >= ...``
    and eigenvectors ``u_i``; the top ``m = min(n, 2k)`` components ``c_i = u_i^T x0``
    go one per real slot (slot ``i`` carries component ``i``; slots ``>= m`` and the
    slots of inactive components carry zeros: repeating a component on two slots
    gives the same SNR as sending it once with their total power).  Component ``i``
    is sent as ``a_i c_i`` with power ``p_i = a_i^2 lambda_i``; at the design noise
    ``sigma^2`` its LMMSE error is ``lambda_i sigma^2 / (p_i + sigma^2)``, so the
    allocation minimises ``sum_i lambda_i sigma^2 / (p_i + sigma^2)`` subject to
    ``sum_i p_i = P = k``, ``p_i >= 0`` (Lee and Petersen 1976, the optimal linear
    code).  The KKT conditions give ``lambda_i sigma^2 / (p_i + sigma^2)^2 = nu`` on the
    active set, i.e. ``p_i = max(0, sigma sqrt(lambda_i / nu) - sigma^2)``; on an
    active set ``A`` of the ``K`` largest eigenvalues the budget fixes
    ``sigma / sqrt(nu) = (P + K sigma^2) / sum_{j in A} sqrt(lambda_j)``, so::

        p_i = sqrt(lambda_i) (P + K sigma^2) / sum_{j in A} sqrt(lambda_j) - sigma^2

    and ``K`` is the largest count for which the ``K``-th power is positive
    (:func:`linear_power_allocation`).  Then the per-image normalisation to energy
    ``k``.  Receiver: the full LMMSE of ``x`` from the ``K`` active slots of ``y``,
    ``x_hat = mu + C_xs (C_ss + sigma^2 I)^-1 (y - E[s])``, with ``C_xs``, ``C_ss``,
    ``E[s]`` measured on the training images after the normalisation; with the
    eigendecomposition ``C_ss = V diag(e) V^T`` it is
    ``mu + (C_xs V) diag(1 / (e + sigma^2)) V^T (y - E[s])``, so one fit serves every
    reported ``no`` (even one per image), and its MSE is
    ``(tr C_xx - sum_j ||(C_xs V)_j||^2 / (e_j + sigma^2)) / n``.

    Spreading (option ``spread``, default False): the slot powers ``p_i`` are very
    unequal (at 10 dB the strongest component's slot carries about 100 times the mean
    power of a slot), which a relay's Gaussian-tuned quantiser (QF) clips.  With
    ``spread: true`` the ``2k`` slot values are multiplied by a fixed orthogonal matrix
    ``Q`` (a seeded random rotation, QR of a Gaussian matrix, seed 0) before the
    normalisation, and the receiver multiplies by ``Q^T`` first; ``Q`` preserves the
    energy and white noise stays white, so over AWGN, AF and DF the performance is the
    same (the noise realisations differ), and every slot carries about the mean power.

    Design SNR: option ``design_snr_db`` (default None: matched to the test SNR of
    each point).  For a per-hop SNR vector (a relay chain) the design SNR is the
    *minimum hop SNR*: the transmitter knows it without probing the channel, it is
    the bottleneck of every segment of a decode-and-forward chain (whose relays
    re-encode with the same code), and the allocation is flat near its optimum, so
    the few dB an AF/QF chain loses end to end cost little (the receiver still uses
    the reported ``no``).  The transmitter statistics are fitted once per design SNR
    (cached).

The per-image gain and the receiver (option ``gain``)
----------------------------------------------------
The per-image normalisation multiplies every image by a gain ``g`` the receiver
must know to invert an analog code; on the embedded data it varies from 1.8 to 3.4
between images (5th to 95th percentile). Three receivers:

- ``gain: header`` (the default): the gain goes **in band**, the way a real system
  would send it: the last real slot (the imaginary part of the last symbol) carries
  the standardised log-gain with 2 % of the energy budget on average
  (:mod:`linksim.schemes.gain_header`), the payload uses the other ``2k - 1`` slots,
  and the receiver estimates the gain from the header and then decodes as if it
  were told it (below). Everything is counted: the header's slot and energy are
  part of the ``k`` channel uses and the unit energy per symbol. This is the
  reference the JSCC schemes are compared with.
- ``gain: genie``: the receiver is told every image's gain without error and
  without cost (an upper bound for the header; one real number per image).
- ``gain: unknown``: the receiver does not know it and uses the statistics of the
  normalised signal (the affine LMMSE of the sections above, exact for the training
  distribution). An affine receiver cannot undo the gain, so its error levels off
  at high SNR (on the embedded data about 25.7 dB for ``uncoded``, 26.8 dB for
  ``linear``).

With the gain known (told or estimated), the receiver divides it out and estimates
from ``y / g = t + w / g`` with the unconditional statistics
(``uncoded``: ``x_hat_i = mu_i + Var(x_i) / (Var(x_i) + sigma^2 / (r_i g^2)) ybar_i / g``;
``linear``: per component ``c_hat_i = a_i lambda_i / (p_i + sigma^2 / g^2) y_i / g``).
Over a DF chain every relay decodes (estimating the gain from the header, or told it
with ``genie``) and re-encodes with a new header.

Over relay chains both schemes are analog: AF and QF relays pass their symbols
through; a DF relay decodes the image (the scheme's receiver, at the segment's
reported ``no``, clipped to [0, 1]) and re-encodes it (the scheme's transmitter, at
the same design SNR).
"""

from __future__ import annotations

import collections
import numbers

import numpy as np
import tensorflow as tf

from linksim.registry import SCHEMES
from linksim.schemes.base import BatchResult, Scheme, SchemeContext
from linksim.schemes.deepjscc_layers import to_slots, to_symbols
from linksim.schemes.gain_header import decode_header, encode_with_header, header_stats, spreading_matrix

__all__ = ["UncodedCode", "LinearCode", "UncodedScheme", "LinearScheme", "linear_power_allocation",
           "principal_components", "GAIN_MODES"]

#: Allowed values of the ``gain`` option: how the receiver learns each image's normalisation gain.
GAIN_MODES = ("header", "genie", "unknown")


def _check_gain(gain) -> str:
    if gain not in GAIN_MODES:
        raise ValueError(f"gain must be one of {', '.join(GAIN_MODES)} (got {gain!r})")
    return gain


def _payload_slots(k: int, gain: str) -> int:
    """Real slots the payload may use: ``2k - 1`` with the gain header (its slot is the last), else ``2k``."""
    return 2 * k - 1 if gain == "header" else 2 * k


def _snr_to_sigma2(snr_db: float) -> float:
    """Noise variance per real slot, ``no / 2 = 10 ** (-snr_db / 10) / 2``."""
    return 0.5 * 10.0 ** (-float(snr_db) / 10.0)


def _check_snr(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number (Es/N0 in dB){' or null' if allow_none else ''}, "
                         f"got {value!r}")
    return float(value)


def _check_fit_inputs(train_images, channel_uses) -> tuple[np.ndarray, tuple, int]:
    x = np.asarray(train_images)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"train_images must be [N, H, W, C] with N >= 2, got shape {x.shape}")
    if isinstance(channel_uses, (bool, np.bool_)) or not isinstance(channel_uses, (int, np.integer)) \
            or channel_uses < 1:
        raise ValueError(f"channel_uses must be a positive integer, got {channel_uses!r}")
    return x.reshape(len(x), -1).astype(np.float64), tuple(int(d) for d in x.shape[1:]), int(channel_uses)


def _normalise(t, k: int):
    """Per-image normalisation of slot values ``t`` ([batch, 2k]) to energy ``k``; zeros stay zeros."""
    energy = tf.reduce_sum(tf.square(t), axis=1, keepdims=True)
    return tf.where(energy > 0, t * tf.math.rsqrt(tf.maximum(energy, 1e-30) / float(k)), tf.zeros_like(t))


def _gain(t, k: int) -> tf.Tensor:
    """``[batch]`` per-image normalisation gain ``sqrt(k) / ||t||`` of slot values ``t`` (0 for ``t = 0``)."""
    energy = tf.reduce_sum(tf.square(t), axis=1)
    return tf.where(energy > 0, tf.math.rsqrt(tf.maximum(energy, 1e-30) / float(k)), tf.zeros_like(energy))


def _sigma2_of(no, dtype=tf.float32) -> tf.Tensor:
    """``no / 2`` as ``[batch or 1, 1]`` (``no`` scalar or ``[batch]``)."""
    s2 = tf.cast(tf.convert_to_tensor(no), dtype) / 2.0
    return tf.reshape(s2, [-1, 1])


def _transmit(t, k: int, header) -> tf.Tensor:
    """Payload slot values ``t`` [B, P] -> ``k`` symbols: with the gain header (``header`` its stats)
    or plain per-image normalisation (``P = 2k``)."""
    if header is not None:
        return encode_with_header(tf.cast(t, tf.float32), k, header)
    return to_symbols(_normalise(t, k), k)


def _received(y, k: int, header, mode: str, gain):
    """``(payload slots [B, P], gain or None)`` of received symbols: the gain estimated from the
    header, told (``genie``, required), or None (``unknown``)."""
    ys = to_slots(y)
    if mode == "header":
        _, scale = decode_header(y, k, header)
        return ys[:, :-1], 1.0 / scale
    if mode == "genie":
        if gain is None:
            raise ValueError("gain='genie' needs every image's gain: decode(..., gain=code.gains(images))")
        return ys, gain
    return ys, None


def principal_components(x0) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing, clipped at 0) and eigenvectors of the covariance of zero-mean rows ``x0``.

    Input
    -----
    x0 : [N, n] float, rows with the mean removed

    Output
    ------
    (eigenvalues [n], eigenvectors [n, n]) float64; column ``i`` belongs to eigenvalue ``i``.
    """
    x0 = np.asarray(x0, np.float64)
    lam, u = np.linalg.eigh(x0.T @ x0 / len(x0))
    order = np.argsort(-lam, kind="stable")
    return np.maximum(lam[order], 0.0), u[:, order]


def linear_power_allocation(variances, budget: float, noise_var: float) -> np.ndarray:
    """The MSE-optimal powers of a linear analog code (reverse water-filling on the variances).

    Minimises ``sum_i lambda_i sigma^2 / (p_i + sigma^2)`` subject to
    ``sum_i p_i = budget``, ``p_i >= 0`` (see the module docstring for the derivation).

    Parameters
    ----------
    variances : [m] array of float >= 0
        Component variances ``lambda_i`` (any order).
    budget : float > 0
        Total power ``P`` (energy per image over the real slots).
    noise_var : float > 0
        Noise variance per real slot ``sigma^2``.

    Output
    ------
    [m] np.ndarray float64: ``p_i >= 0``, summing to ``budget``; zero for inactive components.

    Raises
    ------
    ValueError
        If a variance is negative, or ``budget`` or ``noise_var`` is not positive.
    """
    lam = np.asarray(variances, np.float64)
    if lam.ndim != 1 or np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("variances must be a 1-D array of finite values >= 0")
    if not budget > 0 or not noise_var > 0:
        raise ValueError(f"budget and noise_var must be > 0, got {budget!r} and {noise_var!r}")
    order = np.argsort(-lam, kind="stable")
    root = np.sqrt(lam[order])
    p = np.zeros_like(lam)
    csum = np.cumsum(root)
    best = 0
    for K in range(1, int(np.count_nonzero(root > 0)) + 1):   # the K-th power positive: K is feasible
        if root[K - 1] * (budget + K * noise_var) / csum[K - 1] - noise_var > 0:
            best = K
        else:
            break
    if best == 0:
        return p
    level = (budget + best * noise_var) / csum[best - 1]        # sigma / sqrt(nu) / sigma
    p[order[:best]] = root[:best] * level - noise_var
    return p


class _AnalogCode:
    """What both codes share: the ``gain`` mode, the fit's checks and the training statistics."""

    def __init__(self, gain: str = "header"):
        self.gain = _check_gain(gain)
        self.fitted = False

    def fit(self, train_images, channel_uses: int):
        """Fit the code on ``train_images``.

        Input
        -----
        train_images : [N, H, W, C] float in [0, 1], N >= 2
        channel_uses : int >= 1, k complex channel uses per image

        Output
        ------
        self

        Raises
        ------
        ValueError
            For a wrong shape or a non-positive ``channel_uses``.
        """
        x, self.image_shape, self.k = _check_fit_inputs(train_images, channel_uses)
        self.n = x.shape[1]
        self.slots = _payload_slots(self.k, self.gain)
        self.mu = x.mean(axis=0)
        self._x0 = x - self.mu
        self._mu = tf.constant(self.mu, tf.float32)
        self._fit(self._x0)
        self.fitted = True
        return self

    def _fit(self, x0) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _check_fitted(self):
        if not self.fitted:
            raise ValueError("the code is not fitted: call fit(train_images, channel_uses) first")


class UncodedCode(_AnalogCode):
    """Uncoded analog transmission of the zero-mean pixels with a per-pixel LMMSE receiver.

    Conventions and derivation: :mod:`linksim.schemes.analog`.

    Usage::

        code = UncodedCode().fit(train_images, channel_uses=486)
        x = code.encode(images)                 # [B, k] complex64, mean |x|^2 = 1 per image
        out = channel(x, snr_db)
        images_hat = code.decode(out["y"], out["no"])
        code.expected_mse(snr_db)               # closed-form LMMSE MSE on the training images
    """

    def _fit(self, x0) -> None:
        """The slot map and the receiver statistics."""
        k, n, slots = self.k, self.n, self.slots
        self.pixel_var = x0.var(axis=0)
        by_var = np.argsort(-self.pixel_var, kind="stable")
        if slots >= n:
            spare = slots - n
            pixel_of_slot = np.concatenate([np.arange(n), by_var[np.arange(spare) % n]])
        else:
            pixel_of_slot = np.sort(by_var[:slots])
        self.pixel_of_slot = pixel_of_slot
        self.copies = np.bincount(pixel_of_slot, minlength=n).astype(np.float64)
        # transmitted values s_i = g(x) x0_i of the training images
        t = x0[:, pixel_of_slot]
        energy = np.sum(t * t, axis=1, keepdims=True)
        g = np.where(energy > 0, np.sqrt(k / np.maximum(energy, 1e-300)), 0.0)
        s = g * x0                                               # [N, n]: s_i of every pixel
        self.header = header_stats(t, k) if self.gain == "header" else None
        self.s_mean = s.mean(axis=0)
        self.s_var = s.var(axis=0)
        self.cov_xs = np.mean(x0 * (s - self.s_mean), axis=0)
        combine = np.zeros((slots, n))
        combine[np.arange(slots), pixel_of_slot] = 1.0
        combine /= np.maximum(self.copies, 1.0)
        self._combine = tf.constant(combine, tf.float32)
        self._gather = tf.constant(pixel_of_slot, tf.int32)

    def encode(self, images, snr_db=None) -> tf.Tensor:
        """Images -> channel symbols.

        Input
        -----
        images : [B, H, W, C] float in [0, 1]
        snr_db : ignored (the uncoded map does not depend on the SNR; accepted for a
            common signature with :meth:`LinearCode.encode`)

        Output
        ------
        [B, k] tf.complex64 with mean ``|x|^2 = 1`` over every image's k symbols.
        """
        return _transmit(self._slot_values(images), self.k, self.header)

    def _slot_values(self, images) -> tf.Tensor:
        self._check_fitted()
        x = tf.reshape(tf.cast(images, tf.float32), [-1, self.n]) - self._mu
        return tf.gather(x, self._gather, axis=1)

    def gains(self, images, snr_db=None) -> tf.Tensor:
        """``[B]`` tf.float32: every image's normalisation gain ``g = sqrt(k) / ||t||`` (the side
        information ``decode(..., gain=)`` takes; ``snr_db`` is ignored)."""
        return _gain(self._slot_values(images), self.k)

    def decode(self, y, no, clip: bool = True, gain=None) -> tf.Tensor:
        """Received symbols -> images (per-pixel LMMSE combining a pixel's copies).

        Input
        -----
        y : [B, k] tf.complex64, unit-gain received symbols ``x + w``
        no : float or tf.float32, scalar or [B], noise variance per complex symbol
            (the channel's reported ``out["no"]``)
        clip : bool, clip the images to [0, 1] (default True)
        gain : None or [B] float, every image's normalisation gain (:meth:`gains`): required
            with ``gain="genie"`` (then ``x_hat_i = mu_i + Var(x_i) / (Var(x_i) + sigma^2 /
            (r_i g^2)) * ybar_i / g``), ignored otherwise (``header``: estimated from the
            header slot; ``unknown``: not used)

        Output
        ------
        [B, H, W, C] tf.float32

        Raises
        ------
        ValueError
            With ``gain="genie"`` and no ``gain``.
        """
        self._check_fitted()
        s2 = _sigma2_of(no)
        ys, gain = _received(y, self.k, self.header, self.gain, gain)
        ybar = tf.matmul(ys, self._combine)                                # [B, n]
        r = tf.constant(np.maximum(self.copies, 1.0), tf.float32)
        sent = tf.constant(self.copies > 0)
        if self.gain == "unknown":
            coef = tf.constant(self.cov_xs, tf.float32) / (tf.constant(self.s_var, tf.float32) + s2 / r)
            est = coef * (ybar - tf.constant(self.s_mean, tf.float32))
        else:
            g = tf.reshape(tf.cast(gain, tf.float32), [-1, 1])
            var = tf.constant(self.pixel_var, tf.float32)
            g_safe = tf.where(g > 0, g, tf.ones_like(g))
            est = var / (var + s2 / (r * tf.square(g_safe))) * ybar / g_safe
            est = tf.where(g > 0, est, tf.zeros_like(est))
        x_hat = self._mu + tf.where(sent, est, tf.zeros_like(est))
        if clip:
            x_hat = tf.clip_by_value(x_hat, 0.0, 1.0)
        return tf.reshape(x_hat, [-1, *self.image_shape])

    def expected_mse(self, snr_db, images=None) -> float:
        """Closed-form MSE per pixel of the unclipped receiver, averaged over the noise.

        ``gain="unknown"``: ``mean_i [Var(x_i) - c_i^2 / (v_i + sigma^2 / r_i)]`` on the
        training images (``Var(x_i)`` for an unsent pixel). With the gain known
        (``genie``; ``header`` up to the header's estimation error): the exact
        expectation over the noise for ``images`` (default: the training images),
        ``mean_j mean_i [(b_ij - 1)^2 x0_ij^2 + b_ij^2 sigma^2 / (r_i g_j^2)]`` with
        ``b_ij = Var(x_i) / (Var(x_i) + sigma^2 / (r_i g_j^2))``. ``sigma^2 = 10 **
        (-snr_db / 10) / 2``: the Es/N0 of the unit-gain channel the receiver sees.
        """
        self._check_fitted()
        s2 = _snr_to_sigma2(_check_snr("snr_db", snr_db))
        if self.gain != "unknown":
            x0 = (np.asarray(images, np.float64).reshape(-1, self.n) - self.mu) if images is not None else self._x0
            t = x0[:, self.pixel_of_slot]
            g2 = self.k / np.maximum(np.sum(t * t, 1, keepdims=True), 1e-300)
            r = np.maximum(self.copies, 1.0)
            noise = s2 / (r * g2)                                           # [N, n]
            b = self.pixel_var / (self.pixel_var + noise)
            err = np.where(self.copies > 0, (b - 1) ** 2 * x0 ** 2 + b ** 2 * noise, x0 ** 2)
            return float(err.mean())
        r = np.maximum(self.copies, 1.0)
        gain = np.where(self.copies > 0, self.cov_xs ** 2 / (self.s_var + s2 / r), 0.0)
        return float(np.mean(self.pixel_var - gain))


class _LinearDesign:
    """The fitted transmitter and receiver of :class:`LinearCode` at one design SNR."""

    def __init__(self, code: "LinearCode", design_snr_db: float):
        k, x0 = code.k, code._x0
        lam = code.eigenvalues[:code.m]
        self.design_snr_db = design_snr_db
        self.powers = linear_power_allocation(np.maximum(lam, 0.0), float(k), _snr_to_sigma2(design_snr_db))
        active = self.powers > 0
        self.active = int(active.sum())               # the K largest components (powers decrease)
        K = self.active
        amp = np.sqrt(self.powers[:K] / np.maximum(lam[:K], 1e-300))
        self.encoder = code.eigenvectors[:, :K] * amp   # [n, K]: slot values before normalisation
        t = x0 @ self.encoder
        self.header = header_stats(t, k) if code.gain == "header" else None
        energy = np.sum(t * t, axis=1, keepdims=True)
        g = np.where(energy > 0, np.sqrt(k / np.maximum(energy, 1e-300)), 0.0)
        s = g * t                                       # [N, K]
        self.s_mean = s.mean(axis=0)
        sc = s - self.s_mean
        c_ss = sc.T @ sc / len(s)
        c_xs = x0.T @ sc / len(s)                       # [n, K]
        e, v = np.linalg.eigh(c_ss)
        self.e = np.maximum(e, 0.0)
        self.v = v
        self.a = c_xs @ v                               # [n, K]
        self.a_norm2 = np.sum(self.a * self.a, axis=0)
        self._enc = tf.constant(self.encoder, tf.float32)
        self._v = tf.constant(v, tf.float32)
        self._a = tf.constant(self.a, tf.float32)
        self._e = tf.constant(self.e, tf.float32)
        self._s_mean = tf.constant(self.s_mean, tf.float32)
        self._p = tf.constant(self.powers[:K], tf.float32)
        self._lam = tf.constant(np.maximum(lam[:K], 0.0), tf.float32)
        self._u = tf.constant(code.eigenvectors[:, :K], tf.float32)


class LinearCode(_AnalogCode):
    """The optimal linear analog code: PCA, MSE-optimal power allocation, full LMMSE receiver.

    Conventions and derivation: :mod:`linksim.schemes.analog`.

    Parameters
    ----------
    design_snr_db : float or None
        Es/N0 (dB) the power allocation is optimised for; None (default): the
        ``snr_db`` given to :meth:`encode` / :meth:`decode` / :meth:`expected_mse`.
    spread : bool
        Spread the slot values over all ``2k`` slots with a fixed orthogonal matrix
        (default False; see :mod:`linksim.schemes.analog`): the same MSE over AWGN,
        AF and DF, far less clipping by a QF relay's quantiser.

    Usage::

        code = LinearCode().fit(train_images, channel_uses=486)
        x = code.encode(images, snr_db=10.0)     # [B, k] complex64, mean |x|^2 = 1 per image
        out = channel(x, 10.0)
        images_hat = code.decode(out["y"], out["no"], snr_db=10.0)
        code.expected_mse(10.0)                  # closed-form LMMSE MSE on the training images

    Raises
    ------
    ValueError
        If ``design_snr_db`` is neither None nor a finite number, or ``spread`` is not a bool.
    """

    def __init__(self, design_snr_db: float | None = None, spread: bool = False, gain: str = "header"):
        super().__init__(gain)
        self.design_snr_db = _check_snr("design_snr_db", design_snr_db, allow_none=True)
        if not isinstance(spread, (bool, np.bool_)):
            raise ValueError(f"spread must be true or false, got {spread!r}")
        self.spread = bool(spread)
        self._designs = {}

    def _fit(self, x0) -> None:
        """Principal components (the designs are fitted lazily, per design SNR)."""
        self.m = min(self.n, self.slots)
        self.eigenvalues, self.eigenvectors = principal_components(x0)
        self.total_variance = float(np.sum(x0 * x0) / len(x0))
        self._q = None
        if self.spread:
            self._q = tf.constant(spreading_matrix(self.slots))            # slots = t @ Q^T
        self._designs = {}

    def _design(self, snr_db) -> _LinearDesign:
        self._check_fitted()
        if self.design_snr_db is not None:
            d = self.design_snr_db
        elif snr_db is None:
            raise ValueError("LinearCode(design_snr_db=None) needs the snr_db to design for")
        else:
            d = _check_snr("snr_db", float(snr_db))
        key = round(d, 6)
        if key not in self._designs:
            self._designs[key] = _LinearDesign(self, d)
        return self._designs[key]

    def powers(self, snr_db=None) -> np.ndarray:
        """``[min(n, 2k)]`` float64: the power of every principal component at the design SNR."""
        return self._design(snr_db).powers

    def encode(self, images, snr_db=None) -> tf.Tensor:
        """Images -> channel symbols.

        Input
        -----
        images : [B, H, W, C] float in [0, 1]
        snr_db : float or None, the design SNR (ignored when ``design_snr_db`` is set)

        Output
        ------
        [B, k] tf.complex64 with mean ``|x|^2 = 1`` over every image's k symbols.
        """
        d = self._design(snr_db)
        t = tf.pad(self._slot_values(images, d), [[0, 0], [0, self.slots - d.active]])
        if self._q is not None:
            t = tf.matmul(t, self._q, transpose_b=True)
        return _transmit(t, self.k, d.header)

    def _slot_values(self, images, d) -> tf.Tensor:
        x0 = tf.reshape(tf.cast(images, tf.float32), [-1, self.n]) - self._mu
        return tf.matmul(x0, d._enc)

    def gains(self, images, snr_db=None) -> tf.Tensor:
        """``[B]`` tf.float32: every image's normalisation gain ``g = sqrt(k) / ||t||`` at the design
        SNR (the side information ``decode(..., gain=)`` takes)."""
        return _gain(self._slot_values(images, self._design(snr_db)), self.k)

    def decode(self, y, no, snr_db=None, clip: bool = True, gain=None) -> tf.Tensor:
        """Received symbols -> images (full LMMSE).

        Input
        -----
        y : [B, k] tf.complex64, unit-gain received symbols ``x + w``
        no : float or tf.float32, scalar or [B], noise variance per complex symbol
            (the channel's reported ``out["no"]``)
        snr_db : float or None, the design SNR the symbols were encoded for
            (ignored when ``design_snr_db`` is set; None then: ``-10 log10(no)``,
            which needs a scalar ``no``)
        clip : bool, clip the images to [0, 1] (default True)
        gain : None or [B] float, every image's normalisation gain (:meth:`gains`): required
            with ``gain="genie"``, ignored otherwise (``header``: estimated from the header
            slot). With the gain known each component is estimated from ``y_i / g``,
            ``c_hat_i = a_i lambda_i / (p_i + sigma^2 / g^2) * y_i / g`` (``a_i = sqrt(p_i /
            lambda_i)``), ``x_hat = mu + sum_i c_hat_i u_i``

        Output
        ------
        [B, H, W, C] tf.float32

        Raises
        ------
        ValueError
            With ``gain="genie"`` and no ``gain``.
        """
        if snr_db is None and self.design_snr_db is None:
            snr_db = float(-10.0 * np.log10(float(np.asarray(no))))
        d = self._design(snr_db)
        s2 = _sigma2_of(no)
        ys, gain = _received(y, self.k, d.header, self.gain, gain)
        if self._q is not None:
            ys = tf.matmul(ys, self._q)                                   # undo the spreading: Q^T y
        if self.gain == "unknown":
            ys = ys[:, :d.active] - d._s_mean
            z = tf.matmul(ys, d._v) / (d._e + s2)
            x_hat = self._mu + tf.matmul(z, d._a, transpose_b=True)
        else:
            g = tf.reshape(tf.cast(gain, tf.float32), [-1, 1])
            g_safe = tf.where(g > 0, g, tf.ones_like(g))
            p, lam = d._p, d._lam
            c_hat = tf.sqrt(p * lam) / (p + s2 / tf.square(g_safe)) * ys[:, :d.active] / g_safe
            c_hat = tf.where(g > 0, c_hat, tf.zeros_like(c_hat))
            x_hat = self._mu + tf.matmul(c_hat, d._u, transpose_b=True)
        if clip:
            x_hat = tf.clip_by_value(x_hat, 0.0, 1.0)
        return tf.reshape(x_hat, [-1, *self.image_shape])

    def expected_mse(self, snr_db, design_snr_db=None, images=None) -> float:
        """Closed-form MSE per pixel of the unclipped receiver, averaged over the noise.

        ``gain="unknown"``: ``(tr C_xx - sum_j ||(C_xs V)_j||^2 / (e_j + sigma^2)) / n`` on
        the training images. With the gain known (``genie``; ``header`` up to the header's
        estimation error): the exact expectation over the noise for ``images`` (default:
        the training images) of the per-component receiver. ``sigma^2 = 10 ** (-snr_db /
        10) / 2`` (the receiver's channel), the design at ``design_snr_db`` (default: the
        code's, else ``snr_db``).
        """
        s2 = _snr_to_sigma2(_check_snr("snr_db", snr_db))
        d = self._design(snr_db if design_snr_db is None else design_snr_db)
        if self.gain == "unknown":
            return float((self.total_variance - np.sum(d.a_norm2 / (d.e + s2))) / self.n)
        # gain known: per image j and active component i, c_hat = b (g a c + w) / g,
        # b = a lam / (p + s2 / g^2); error (b a - 1)^2 c^2 + b^2 s2 / g^2; inactive components: c^2
        x0 = (np.asarray(images, np.float64).reshape(-1, self.n) - self.mu) if images is not None else self._x0
        c = x0 @ self.eigenvectors
        K = d.active
        t = c[:, :K] * np.sqrt(d.powers[:K] / np.maximum(self.eigenvalues[:K], 1e-300))
        g2 = self.k / np.maximum(np.sum(t * t, 1, keepdims=True), 1e-300)
        lam, p = self.eigenvalues[:K], d.powers[:K]
        a = np.sqrt(p / np.maximum(lam, 1e-300))
        b = a * lam / (p + s2 / g2)
        err = np.sum((b * a - 1) ** 2 * c[:, :K] ** 2 + b ** 2 * s2 / g2, 1) + np.sum(c[:, K:] ** 2, 1)
        return float(err.mean() / self.n)


def _design_snr(snr_db) -> float:
    """The design SNR of a test point: the SNR itself, or the minimum hop SNR of a per-hop list."""
    if isinstance(snr_db, (list, tuple)):
        return float(min(float(np.min(np.asarray(v, np.float64))) for v in snr_db))
    return float(np.min(np.asarray(snr_db, np.float64)))


#: Fitted codes of this process by (code options, training images, channel uses): a channel sweep
#: prepares a scheme once per chain, and the fit (principal components, receiver statistics) and the
#: LMMSE designs per SNR depend on none of the chain (dhd_multihop_qf: 13 chains, 5 designs each).
_FITTED: "collections.OrderedDict[tuple, _AnalogCode]" = collections.OrderedDict()
_FITTED_KEEP = 4


def _fitted(code: "_AnalogCode", train_images, channel_uses: int) -> "_AnalogCode":
    """``code`` fitted on ``train_images``, or the fitted code of this process with the same options and
    inputs (shared: a fitted code's state is only its fit and its designs, filled in lazily)."""
    from linksim.store import array_digest

    x = np.ascontiguousarray(train_images)
    options = tuple(sorted((k, repr(v)) for k, v in vars(code).items() if not k.startswith("_")))
    key = (type(code).__name__, options, array_digest(x), int(channel_uses))
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return _FITTED[key]
    _FITTED[key] = code.fit(x, channel_uses)
    while len(_FITTED) > _FITTED_KEEP:
        _FITTED.popitem(last=False)
    return _FITTED[key]


class _AnalogScheme(Scheme):
    """Shared runner glue of the analog references (no training, a closed-form fit in :meth:`prepare`)."""

    digital = False
    trainable = False

    def __init__(self, label: str | None, gain: str):
        super().__init__(label)
        self.gain = _check_gain(gain)

    def _make_code(self):  # pragma: no cover - interface
        raise NotImplementedError

    def prepare(self, context: SchemeContext) -> None:
        """Fit the code on ``context.train_images`` and bind the channel (a DF relay decodes and re-encodes)."""
        self.context = context
        if context.train_images is None or len(context.train_images) < 2:
            raise ValueError(f"{self.label}: the analog references are fitted on the training images; "
                             f"the scenario has none")
        self.code = _fitted(self._make_code(), context.train_images, int(context.channel_uses))
        self._design_point = None
        self._side_gain = None
        self.channel = context.channel.bind(regenerate=self._regenerate)

    def _regenerate(self, y, no):
        """A decode-and-forward relay: decode the image (clipped), re-encode it at the same design SNR.

        With ``gain: genie`` the relay is told the gain of the image it receives and
        forwards the gain of the image it re-encodes (the chain is called eagerly, hop by hop).
        """
        images = self.code.decode(y, no, gain=self._side_gain, **self._decode_kwargs())
        if self.gain == "genie":
            self._side_gain = self.code.gains(images, **self._encode_kwargs())
        return self.code.encode(images, **self._encode_kwargs())

    def _encode_kwargs(self) -> dict:
        return {}

    def _decode_kwargs(self) -> dict:
        return {}

    def encode(self, images: np.ndarray):
        return tf.constant(np.asarray(images, np.float32))

    def evaluate(self, state, snr_db) -> BatchResult:
        """Send the batch at ``snr_db`` (a scalar, or one per hop) and decode with the reported ``no``."""
        self._design_point = _design_snr(snr_db)
        x = self.code.encode(state, **self._encode_kwargs())
        self._side_gain = self.code.gains(state, **self._encode_kwargs()) if self.gain == "genie" else None
        out = self.channel(x, snr_db)
        images = self.code.decode(out["y"], out["no"], gain=self._side_gain, **self._decode_kwargs()).numpy()
        b = int(state.shape[0])
        counts = {"images": b, "channel_uses": b * int(self.context.channel_uses), "source_bits": float("nan")}
        return BatchResult(images, counts)


@SCHEMES.register("uncoded")
class UncodedScheme(_AnalogScheme):
    """``uncoded``: zero-mean pixels on I and Q, highest-variance pixels repeated, per-pixel LMMSE.

    An analog reference without training (:class:`UncodedCode`; conventions in
    :mod:`linksim.schemes.analog`).

    Parameters
    ----------
    gain : {"header", "genie", "unknown"}
        How the receiver learns every image's normalisation gain: from a header slot
        sent in band (default), told without error or cost (a genie), or not at all
        (see :mod:`linksim.schemes.analog`).
    label : str or None

    Raises
    ------
    ValueError
        If ``gain`` is not one of the allowed values.
    """

    def __init__(self, gain: str = "header", label: str | None = None):
        super().__init__(label or "Uncoded (LMMSE)", gain)

    def _make_code(self):
        return UncodedCode(gain=self.gain)

    def describe(self) -> dict:
        return {**super().describe(), "receiver": "per-pixel LMMSE", "gain": self.gain}


@SCHEMES.register("linear")
class LinearScheme(_AnalogScheme):
    """``linear``: PCA with the MSE-optimal power allocation and a full LMMSE receiver.

    An analog reference without training (:class:`LinearCode`; conventions in
    :mod:`linksim.schemes.analog`).

    Parameters
    ----------
    design_snr_db : float or None
        Es/N0 (dB) the power allocation is optimised for; None (default): each test
        point's SNR (over a relay chain with one SNR per hop, the minimum hop SNR).
    spread : bool
        Spread the slot values with a fixed orthogonal matrix (default False; use it
        over QF relays, see :mod:`linksim.schemes.analog`).
    gain, label :
        As :class:`UncodedScheme`.

    Raises
    ------
    ValueError
        If ``design_snr_db`` is neither null nor a finite number, ``spread`` is not a
        bool, or ``gain`` is not one of the allowed values.
    """

    def __init__(self, design_snr_db: float | None = None, spread: bool = False, gain: str = "header",
                 label: str | None = None):
        super().__init__(label or "Linear (PCA + LMMSE)", gain)
        self._code = LinearCode(design_snr_db=design_snr_db, spread=spread, gain=gain)   # validates the options
        self.design_snr_db, self.spread = self._code.design_snr_db, self._code.spread

    def _make_code(self):
        return LinearCode(design_snr_db=self.design_snr_db, spread=self.spread, gain=self.gain)

    def _encode_kwargs(self) -> dict:
        return {"snr_db": self._design_point}

    def _decode_kwargs(self) -> dict:
        return {"snr_db": self._design_point}

    def describe(self) -> dict:
        return {**super().describe(), "design_snr_db": self.design_snr_db, "spread": self.spread,
                "receiver": "full LMMSE", "gain": self.gain}
