"""Kernels of the simulated analog crossbar: programming, drift, noisy MVMs, pulsed updates.

The physical model and the sources of its parameters are documented in
:mod:`twinpass.devices.analog_model`; here are the arrays. A *tile* holds one weight
matrix (the hidden tile ``[A | R]``, the output tile ``B``, the decorrelation tile ``D``)
as, per weight, two devices (``d = 0``: g+, ``d = 1``: g-):

- ``dev`` float32 ``(rows, cols, 2, N_FIELDS)`` (one weight's devices share a cache
  line: a pulse touches one line, not fourteen): per device its conductance at the last
  write ``F_G0``, its drift factor at the last refresh ``F_FAC``, its slow 1/f offset
  ``F_FLK``, its drift exponent ``F_NU``, its maximum ``F_GMAX`` and pulse-step factor
  ``F_DWF`` (device-to-device variation) and ``F_STUCK`` (1: stuck);
- ``tw`` int64 ``(rows, cols, 2)``: the step of each device's last write;
- ``W`` float32 ``(rows, cols)``: the weight as the substrate holds it now,
  ``scale * (g+ - g-)`` with ``g = G0 * FAC + FLK`` (clipped at 0), kept current by every
  write, pulse and refresh so that an MVM reads one array;
- ``chi`` float32 ``(rows, cols)``: the digital accumulator of mixed-precision updates,
  in units of a nominal pulse.

The model's parameters come as the float64 vector ``prm`` (indices ``P_*``, filled by
:func:`twinpass.devices.analog_model.kernel_vector`). Counters ``counters = [resync
counter, clock (steps since load), clock of the last refresh]``. Three counter-based
generators (:mod:`.rng`), rows of ``rngs``: ``R_NODE`` the learning rule's own noise
(node or weight perturbation), ``R_SUB`` the substrate's noise in learning passes, pulses
and refreshes, ``R_EVAL`` the substrate's noise in :func:`analog_forward_block`.

Every function is a pure function of its arrays; the block kernels loop over T steps in
compiled code and allocate nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activation import tanh_into
from .decorrelation import decor_prepare
from .perturbation import (
    FASTMATH,
    _all_finite,
    _features,
    _leak,
    _mean_losses,
    _outputs,
    _update_small,
    exact_readout_hidden_step,
)
from .perturbation import update_coefficients as _coefficients
from .readout import READOUT_ANP, READOUT_NLMS, READOUT_RLS, nlms_coefficients, rls_flush, rls_step
from .rng import fill_normal_inline as fill_normal
from .rng import next_normal_inline, next_uniform_inline

RULE_WP = 2

# Every helper of this module is out of line: inlined at Numba's IR level
# (``inline="always"``), where each call site re-types the whole body, they made a cold
# compile of the analog path three times as long (benchmarks/compile_time.py, RESULTS);
# LLVM still inlines what pays. The same flags as every kernel that calls them, so that
# their bits do not depend on which caller compiled first.
_HELPER = {"fastmath": FASTMATH, "error_model": "numpy"}

F_G0, F_FAC, F_FLK, F_NU, F_GMAX, F_DWF, F_STUCK = range(7)
N_FIELDS = 7

(
    P_INP_BOUND, P_INP_STEP, P_OUT_BOUND, P_OUT_STEP, P_OUT_NOISE, P_READ_NOISE,
    P_DW, P_DW_C2C, P_UNIDIR, P_GSYM, P_REFRESH_THR,
    P_PROG_C0, P_PROG_C1, P_PROG_C2, P_PROG_SCALE, P_LEVELS,
    P_T0, P_SPS, P_DRIFT, P_FLICKER, P_Q_COEFF, P_Q_EXP, P_Q_MAX,
    P_GMAX_DTOD, P_DW_DTOD, P_STUCK, P_STOCHASTIC, P_SPAN,
) = range(28)  # fmt: skip
N_PARAMS = 28

R_NODE, R_SUB, R_EVAL = range(3)
C_RESYNC, C_CLOCK, C_LAST = range(3)

# Rows of the hidden work array (nw, nb, N) of analog_block.
AW_XI1, AW_XI2, AW_XP1, AW_XP2, AW_X1, AW_X2, AW_XHN1, AW_XHN2, AW_CH, AW_TMP = range(10)
N_AWORK = 10
# Rows of the output work array (no, nb, n_out); AO_BIN: the digital readout's input and
# bias share of both replicas' outputs.
AO_ZETA1, AO_ZETA2, AO_B1, AO_B2, AO_CO, AO_BIN = range(6)
N_AWORK_OUT = 6
# The digital readout's event counters (dcounts): RLS's resets and bounds of P.
D_RLS_RESET, D_RLS_BOUND = range(2)
# Rows of an input buffer (5, nb, cols): raw input of replica 1, then DAC'd input and its
# square for both replicas.
Z_RAW, Z_Q1, Z_SQ1, Z_Q2, Z_SQ2 = range(5)
N_ZBUF = 5


# -- devices -------------------------------------------------------------------------------


@njit(**_HELPER)
def _gread(dev, d, i, j):
    """A device's conductance as read now (drifted, with its slow 1/f offset), >= 0."""
    g = dev[i, j, d, F_G0] * dev[i, j, d, F_FAC] + dev[i, j, d, F_FLK]
    return g if g > 0.0 else dev.dtype.type(0.0)


@njit(**_HELPER)
def _set_weight(W, dev, i, j, scale):
    W[i, j] = W.dtype.type(scale * (np.float64(_gread(dev, 0, i, j)) - _gread(dev, 1, i, j)))


@njit(**_HELPER)
def prog_sigma(g, c0, c1, c2):
    """Programming-noise standard deviation at normalised target conductance g (>= 0)."""
    s = c0 + c1 * g + c2 * g * g
    return s if s > 0.0 else 0.0


@njit(**_HELPER)
def _write(dev, tw, d, i, j, g_target, prm, rng, clock):
    """Program one device to ``g_target`` (programming noise, clipped to its range)."""
    if dev[i, j, d, F_STUCK] > 0:
        return
    g = g_target
    if prm[P_PROG_SCALE] > 0.0:
        sd = prog_sigma(g_target, prm[P_PROG_C0], prm[P_PROG_C1], prm[P_PROG_C2])
        g += prm[P_PROG_SCALE] * sd * next_normal_inline(rng)
    gm = dev[i, j, d, F_GMAX]
    g = min(max(g, 0.0), gm)
    dev[i, j, d, F_G0] = g
    dev[i, j, d, F_FAC] = 1.0
    dev[i, j, d, F_FLK] = 0.0
    tw[i, j, d] = clock


@njit(**_HELPER)
def _quantise_level(g, levels):
    if levels >= 2:
        return np.floor(g * (levels - 1.0) + 0.5) / (levels - 1.0)
    return g


@njit(**_HELPER)
def _targets(w_norm, prm):
    """The pair's target conductances for a weight ``w / scale`` (clipped to the span)."""
    span = prm[P_SPAN]
    w = min(max(w_norm, -span), span)
    if prm[P_UNIDIR] > 0:
        gp = w if w > 0.0 else 0.0
        gm = -w if w < 0.0 else 0.0
    else:
        gp = 0.5 + w
        gm = 0.5
    return _quantise_level(gp, prm[P_LEVELS]), _quantise_level(gm, prm[P_LEVELS])


@njit(**_HELPER)
def _program_pair(dev, tw, i, j, w_norm, prm, rng, clock):
    """Write-verify of a pair: program ``g+ - g- = w_norm`` around a stuck device.

    A stuck partner is compensated (its level is read and the other device set to
    ``stuck ± w``), as a verify loop on the pair's difference does; both stuck: nothing.
    """
    gp, gm = _targets(w_norm, prm)
    sp = dev[i, j, 0, F_STUCK] > 0
    sm = dev[i, j, 1, F_STUCK] > 0
    if sp and not sm:
        gm = _quantise_level(max(np.float64(dev[i, j, 0, F_G0]) - w_norm, 0.0), prm[P_LEVELS])
    elif sm and not sp:
        gp = _quantise_level(max(np.float64(dev[i, j, 1, F_G0]) + w_norm, 0.0), prm[P_LEVELS])
    _write(dev, tw, 0, i, j, gp, prm, rng, clock)
    _write(dev, tw, 1, i, j, gm, prm, rng, clock)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def program_tile(Wt, dev, tw, W, scale, prm, rng, clock):
    """Draw every device's static properties and program the weights ``Wt`` onto them.

    Per device, in this order: g_max factor, pulse-step factor (when their variation is
    on), stuck draw and stuck level (when stuck_fraction > 0), drift exponent (when drift
    is on); then the pair is written (:func:`_program_pair`: one normal per free device
    when programming noise is on).
    """
    rows, cols = Wt.shape
    for i in range(rows):
        for j in range(cols):
            gp, gm = _targets(Wt[i, j] / scale, prm)
            for d in range(2):
                gmf = 1.0
                if prm[P_GMAX_DTOD] > 0.0:
                    gmf = max(1.0 + prm[P_GMAX_DTOD] * next_normal_inline(rng), 0.1)
                dwf = 1.0
                if prm[P_DW_DTOD] > 0.0:
                    dwf = max(1.0 + prm[P_DW_DTOD] * next_normal_inline(rng), 0.0)
                dev[i, j, d, F_GMAX] = gmf
                dev[i, j, d, F_DWF] = dwf
                dev[i, j, d, F_STUCK] = 0.0
                dev[i, j, d, F_NU] = 0.0
                if prm[P_STUCK] > 0.0 and next_uniform_inline(rng) < prm[P_STUCK]:
                    on = next_uniform_inline(rng) < 0.5
                    dev[i, j, d, F_STUCK] = 1.0
                    dev[i, j, d, F_G0] = gmf if on else 0.0
                    dev[i, j, d, F_FAC] = 1.0
                    dev[i, j, d, F_FLK] = 0.0
                    tw[i, j, d] = clock
                if prm[P_DRIFT] > 0.0:
                    gr = max(gp if d == 0 else gm, 1e-7)
                    lg = np.log(gr)
                    mu = min(max(-0.0155 * lg + 0.0244, 0.049), 0.1)
                    sd = min(max(-0.0125 * lg - 0.0059, 0.008), 0.045)
                    dev[i, j, d, F_NU] = abs(mu + sd * next_normal_inline(rng)) * prm[P_DRIFT]
            _program_pair(dev, tw, i, j, Wt[i, j] / scale, prm, rng, clock)
            _set_weight(W, dev, i, j, scale)


@njit(**_HELPER)
def _refresh_tile(dev, tw, W, scale, prm, rng, clock, last, nbuf):
    """Advance drift and the slow 1/f noise of every device to ``clock``.

    Per row, one normal per device (2 * cols) when the 1/f noise is on.
    """
    rows, cols = W.shape
    sps = prm[P_SPS]
    t0 = prm[P_T0]
    drift = prm[P_DRIFT] > 0.0
    flicker = prm[P_FLICKER] > 0.0
    if not (drift or flicker):
        return
    for i in range(rows):
        if flicker:
            fill_normal(rng, 1.0, nbuf)
        for j in range(cols):
            for d in range(2):
                if dev[i, j, d, F_STUCK] > 0:
                    continue
                age = (clock - tw[i, j, d]) * sps
                if drift:
                    dev[i, j, d, F_FAC] = ((age + t0) / t0) ** (-np.float64(dev[i, j, d, F_NU]))
                if flicker:
                    prev = max(last - tw[i, j, d], 0) * sps
                    g = np.float64(dev[i, j, d, F_G0]) * dev[i, j, d, F_FAC]
                    gp = g ** prm[P_Q_EXP] if g > 0.0 else 0.0
                    q = min(prm[P_Q_COEFF] / max(gp, 1e-3), prm[P_Q_MAX])
                    var = (q * g) ** 2 * np.log((age + sps) / (prev + sps))
                    dev[i, j, d, F_FLK] += prm[P_FLICKER] * np.sqrt(var) * nbuf[d, j]
            _set_weight(W, dev, i, j, scale)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def refresh_tile(dev, tw, W, scale, prm, rng, clock, last, nbuf):
    """Public entry of the drift / 1/f refresh (tests); ``nbuf`` is (2, cols) scratch."""
    _refresh_tile(dev, tw, W, scale, prm, rng, clock, last, nbuf)


@njit(**_HELPER)
def _store_pulsed(dev, tw, i, j, d, g, gm, unidir, prm, rng, clock):
    """Store a pulsed conductance ``g`` (a fresh write: no drift, no 1/f yet) of device d;
    past the refresh threshold a PCM pair is reset and its weight reprogrammed."""
    dev[i, j, d, F_G0] = g
    dev[i, j, d, F_FAC] = 1.0
    dev[i, j, d, F_FLK] = 0.0
    tw[i, j, d] = clock
    if unidir and g > prm[P_REFRESH_THR] * gm:
        w = np.float64(_gread(dev, 0, i, j)) - _gread(dev, 1, i, j)
        _write(dev, tw, 0, i, j, 0.0, prm, rng, clock)
        _write(dev, tw, 1, i, j, 0.0, prm, rng, clock)
        _program_pair(dev, tw, i, j, w, prm, rng, clock)


@njit(**_HELPER)
def _fire(dev, tw, W, i, j, n, scale, prm, rng, clock):
    """Apply ``n`` pulses (sign = direction) to weight (i, j), then refresh its W entry.

    PCM (unidirectional): a positive update potentiates g+, a negative one g-; past the
    refresh threshold the pair is reset and its weight reprogrammed. RRAM: g+ moves both
    ways against the fixed reference g-. Soft bounds; one normal per pulse when the
    cycle-to-cycle variation is on.
    """
    unidir = prm[P_UNIDIR] > 0
    d = 0
    up = n > 0
    if unidir:
        d = 0 if n > 0 else 1
        up = True
    gsym = prm[P_GSYM]
    cnt = n if n > 0 else -n
    if prm[P_DW_C2C] == 0.0 and cnt > 1:
        # Without cycle-to-cycle noise a train of soft-bound pulses has a closed form:
        # the distance to the bound shrinks by a constant factor per pulse. (A PCM pair
        # is then refreshed once, after the train, not in the middle of it.)
        if dev[i, j, d, F_STUCK] == 0:
            g = np.float64(_gread(dev, d, i, j))
            gm = np.float64(dev[i, j, d, F_GMAX])
            dw = prm[P_DW] * dev[i, j, d, F_DWF]
            if up:
                r = max(1.0 - dw / (gm * (1.0 - gsym)), 0.0)
                g = gm - (gm - g) * r**cnt
            else:
                r = max(1.0 - dw / (gm * gsym), 0.0)
                g = g * r**cnt
            _store_pulsed(dev, tw, i, j, d, min(max(g, 0.0), gm), gm, unidir, prm, rng, clock)
        cnt = 0
    for _ in range(cnt):
        if dev[i, j, d, F_STUCK] > 0:
            break
        g = np.float64(_gread(dev, d, i, j))
        gm = np.float64(dev[i, j, d, F_GMAX])
        gh = g / gm
        dw = prm[P_DW] * dev[i, j, d, F_DWF]
        st = dw * (1.0 - gh) / (1.0 - gsym) if up else -dw * gh / gsym
        if prm[P_DW_C2C] > 0.0:
            st *= 1.0 + prm[P_DW_C2C] * next_normal_inline(rng)
        _store_pulsed(dev, tw, i, j, d, min(max(g + st, 0.0), gm), gm, unidir, prm, rng, clock)
    _set_weight(W, dev, i, j, scale)


@njit(**_HELPER)
def _delta(W, E, i, j, c, p, kc, f, kf, ke):
    """The requested change of weight (i, j): -kc sum_b c[b,i] p[b,j] + kf f[i] W - ke E."""
    v = 0.0
    if kc != 0.0:
        for b in range(c.shape[0]):
            v -= c[b, i] * np.float64(p[b, j])
        v *= kc
    if kf != 0.0:
        v += kf * f[i] * np.float64(W[i, j])
    if ke != 0.0:
        v -= ke * np.float64(E[i, j])
    return v


@njit(**_HELPER)
def _accumulate_row(chi, i, c, p, kc, f, kf, W, E, ke, inv):
    """Mixed precision, row i: ``chi += dw / dw_min`` (a small function of its own: inside
    the pulse code's loop nest LLVM did not vectorise it, 7x slower)."""
    cols = chi.shape[1]
    if kc != 0.0:
        for b in range(c.shape[0]):
            cb = chi.dtype.type(kc * c[b, i] * inv)
            for j in range(cols):
                chi[i, j] = chi[i, j] - cb * p[b, j]
    if kf != 0.0:
        fb = chi.dtype.type(kf * f[i] * inv)
        for j in range(cols):
            chi[i, j] = chi[i, j] + fb * W[i, j]
    if ke != 0.0:
        eb = chi.dtype.type(ke * inv)
        for j in range(cols):
            chi[i, j] = chi[i, j] - eb * E[i, j]
    # How many weights of the row are due a pulse. A count, not a max: without the nnan
    # flag (kept so that NaN checks work) LLVM does not vectorise a float max reduction.
    due = 0
    for j in range(cols):
        due += 1 if abs(chi[i, j]) >= 1.0 else 0
    return due


@njit(**_HELPER)
def _apply_update(W, dev, tw, chi, scale, c, p, kc, f, kf, E, ke, pmax, prm, rng, clock):
    """Turn the requested update into pulses: stochastic or mixed-precision (see module).

    Stochastic: weight (i, j) gets floor(x) + Bernoulli(frac(x)) pulses, x = |dw| / dw_min.
    A row whose bound on x is below 1 is sampled by geometric skipping (candidates at
    rate ``bound``, accepted with x / bound): the same Bernoulli law, with work
    proportional to the pulses, not to the row. Mixed: ``chi += dw / dw_min`` and whole
    pulses are transferred (``chi`` keeps the remainder).
    """
    rows, cols = W.shape
    inv = 1.0 / (prm[P_DW] * scale)
    nb = c.shape[0]
    if prm[P_STOCHASTIC] > 0:
        if kc != 0.0:
            for b in range(nb):
                m = 0.0
                for j in range(cols):
                    m = max(m, abs(np.float64(p[b, j])))
                pmax[b] = m
        for i in range(rows):
            bound = 0.0
            if kc != 0.0:
                for b in range(nb):
                    bound += abs(c[b, i]) * pmax[b]
                bound *= abs(kc)
            if kf != 0.0:
                m = 0.0
                for j in range(cols):
                    m = max(m, abs(np.float64(W[i, j])))
                bound += abs(kf * f[i]) * m
            if ke != 0.0:
                m = 0.0
                for j in range(cols):
                    m = max(m, abs(np.float64(E[i, j])))
                bound += abs(ke) * m
            bound *= inv
            if not bound > 0.0:
                continue
            if bound >= 1.0:
                for j in range(cols):
                    x = _delta(W, E, i, j, c, p, kc, f, kf, ke) * inv
                    a = abs(x)
                    k = np.floor(a)
                    if next_uniform_inline(rng) < a - k:
                        k += 1.0
                    if k > 0.0:
                        _fire(
                            dev, tw, W, i, j, int(k) if x > 0 else -int(k), scale, prm, rng, clock
                        )
            else:
                lq = np.log1p(-bound)
                j = -1
                while True:
                    j += 1 + int(np.log(next_uniform_inline(rng)) / lq)
                    if j >= cols:
                        break
                    x = _delta(W, E, i, j, c, p, kc, f, kf, ke) * inv
                    if next_uniform_inline(rng) * bound < abs(x):
                        _fire(dev, tw, W, i, j, 1 if x > 0 else -1, scale, prm, rng, clock)
        return
    for i in range(rows):
        # The scalar scan (with its branch to the pulse code) only where a pulse is due.
        if _accumulate_row(chi, i, c, p, kc, f, kf, W, E, ke, inv) == 0:
            continue
        for j in range(cols):
            v = chi[i, j]
            if v >= 1.0 or v <= -1.0:
                k = int(v)
                chi[i, j] = v - k
                _fire(dev, tw, W, i, j, k, scale, prm, rng, clock)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def apply_update(W, dev, tw, chi, scale, c, p, kc, f, kf, E, ke, pmax, prm, rng, clock):
    """Public entry of :func:`_apply_update` (tests)."""
    _apply_update(W, dev, tw, chi, scale, c, p, kc, f, kf, E, ke, pmax, prm, rng, clock)


# -- the periphery and the MVM ---------------------------------------------------------------


@njit(**_HELPER)
def quantise(v, bound, step):
    """Clip to ±bound and round to the nearest multiple of step (0: no rounding)."""
    v = min(max(v, -bound), bound)
    if step > 0.0:
        v = np.floor(v / step + 0.5) * step
    return v


@njit(**_HELPER)
def _dac(z, zq, zsq, alpha, prm):
    """Abs-max scaling per stream, then the DAC: zq = quantise(z / alpha), zsq = zq²."""
    nb, cols = z.shape
    bound = prm[P_INP_BOUND]
    st = prm[P_INP_STEP]
    for b in range(nb):
        m = 0.0
        for j in range(cols):
            m = max(m, abs(np.float64(z[b, j])))
        al = m if m > 0.0 else 1.0
        alpha[b] = al
        inv = 1.0 / al
        for j in range(cols):
            v = zq.dtype.type(quantise(z[b, j] * inv, bound, st))
            zq[b, j] = v
            zsq[b, j] = v * v


@njit(**_HELPER)
def _adc(acc, var, inv, nz_read, nz_out, prm):
    """One output: analog sum + read noise + output noise, then the ADC (normalised units)."""
    y = acc * inv
    rn = prm[P_READ_NOISE]
    if rn > 0.0:
        v = var * inv
        y += rn * np.sqrt(v if v > 0.0 else 0.0) * nz_read
    y += prm[P_OUT_NOISE] * nz_out
    return quantise(y, prm[P_OUT_BOUND], prm[P_OUT_STEP])


@njit(**_HELPER)
def _mvm(W, scale, zq1, zsq1, al1, zq2, zsq2, al2, two, E, has_e, out1, out2, nz, prm, rng):
    """Noisy MVM of one tile for replica 1 (and 2): ``out = alpha * scale * ADC(...)``.

    Draws nz (4, nb, rows) from ``rng`` (read and output noise of replica 1, then 2) when
    either noise is on. ``has_e``: replica 2 reads W + E (weight perturbation).
    """
    rows, cols = W.shape
    nb = zq1.shape[0]
    noisy = prm[P_READ_NOISE] > 0.0 or prm[P_OUT_NOISE] > 0.0
    if noisy:
        fill_normal(rng, 1.0, nz)
    else:
        nz[:] = 0
    inv = 1.0 / scale
    zero = W.dtype.type(0)
    for i in range(rows):
        for b in range(nb):
            s1 = zero
            v1 = zero
            s2 = zero
            v2 = zero
            if not two:
                for j in range(cols):
                    w = W[i, j]
                    s1 += w * zq1[b, j]
                    v1 += abs(w) * zsq1[b, j]
            elif not has_e:
                for j in range(cols):
                    w = W[i, j]
                    aw = abs(w)
                    s1 += w * zq1[b, j]
                    v1 += aw * zsq1[b, j]
                    s2 += w * zq2[b, j]
                    v2 += aw * zsq2[b, j]
            else:
                for j in range(cols):
                    w = W[i, j]
                    w2 = w + E[i, j]
                    s1 += w * zq1[b, j]
                    v1 += abs(w) * zsq1[b, j]
                    s2 += w2 * zq2[b, j]
                    v2 += abs(w2) * zsq2[b, j]
            y = _adc(np.float64(s1), np.float64(v1), inv, nz[0, b, i], nz[1, b, i], prm)
            out1[b, i] = y * al1[b] * scale
            if two:
                y = _adc(np.float64(s2), np.float64(v2), inv, nz[2, b, i], nz[3, b, i], prm)
                out2[b, i] = y * al2[b] * scale


@njit(**_HELPER)
def _hidden_input(zb, u, xh1, xh2, n_in):
    """zb[Z_RAW] = [u, xh1]; zb[Z_Q2] temporarily = [u, xh2] (DAC'd in place next)."""
    nb, n = xh1.shape
    for b in range(nb):
        for j in range(n_in):
            zb[Z_RAW, b, j] = u[b, j]
            zb[Z_Q2, b, j] = u[b, j]
        for j in range(n):
            zb[Z_RAW, b, n_in + j] = xh1[b, j]
            zb[Z_Q2, b, n_in + j] = xh2[b, j]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def analog_block(
    WH, devH, twH, chiH, WO, devO, twO, chiO, WD, devD, twD, chiD, scales, prm,
    xh1, xh2, counters, rngs, refresh_every,
    U, Y, pred, loss1, loss2,
    rule, lr, sigma, eps, gain, decor, two_noisy, resync_every, out_cap,
    work, work_out, zbuf, xbuf, alpha, nzH, nzO, pmax, q, nbuf, EH, EO,
    readout, Bd, P, ph, pend, dcounts, feat, lrh, leak, mu, lam, p0,
):  # fmt: skip
    """ANP, NP or WP on the substrate over a block of T steps; returns the steps completed.

    Tiles: hidden ``WH = [A | R]`` (N, n_in + N) reading ``[u, xh]``; output ``WO = B``
    reading xh; decorrelation ``WD = D`` reading x when ``decor`` (otherwise x). The
    units leak digitally, xh' = (1 - leak) xh + leak x (x the tanh of the measured
    pre-activations, or D's output), since the state lives in the periphery between
    passes. ``scales`` (3,): the tiles' weight scales. Both replicas are passes through
    the noisy substrate; the rule sees only what the ADC measured plus its own digital
    noise. The hidden tile learns with step ``lrh``.

    ``readout``: READOUT_ANP, the output tile learned by the rule's estimate (step ``lr``,
    output noise zeta); otherwise the readout lives in the digital periphery, as on analog
    accelerators: ``Bd`` (n_out, F) float32 over ``feat`` = [xh', u, 1] (F = N + n_in + 1)
    or xh' (F = N), learned by NLMS (step ``mu``) or RLS (``P`` (F, F) float64, ``ph``
    (2, F), ``pend`` (1,), forgetting ``lam``, bound ``p0``; counters ``dcounts``), both
    replicas read exactly (no output noise), and the hidden step is normalised by
    ``1 + ‖B_h‖²`` as on the host (:func:`.perturbation.exact_readout_hidden_step`). The
    output tile is then unused (WP, whose perturbation lives in it, keeps readout ANP).
    Per step: a refresh of drift and 1/f noise when ``refresh_every`` steps have passed
    (substrate rng); node noise xi2, zeta2, then (two_noisy) xi1, zeta1 of std sigma (node
    rng; WP instead draws E_H then E_O); the MVMs of the hidden, decorrelation and output
    tiles (substrate rng); the update as pulses (substrate rng), tiles H, O, then D.
    Conventions of outputs and the non-finite rule as :func:`.perturbation.perturbation_block`.
    """
    T = U.shape[0]
    nb, n = xh1.shape
    n_in = U.shape[2]
    rng_node = rngs[R_NODE]
    rng_sub = rngs[R_SUB]
    xi1 = work[AW_XI1]
    xi2 = work[AW_XI2]
    xp1 = work[AW_XP1]
    xp2 = work[AW_XP2]
    x1 = work[AW_X1]
    x2 = work[AW_X2]
    xhn1 = work[AW_XHN1]
    xhn2 = work[AW_XHN2]
    ch = work[AW_CH]
    tmp = work[AW_TMP]
    zeta1 = work_out[AO_ZETA1]
    zeta2 = work_out[AO_ZETA2]
    b1 = work_out[AO_B1]
    b2 = work_out[AO_B2]
    co = work_out[AO_CO]
    bin_ = work_out[AO_BIN]
    is_wp = rule == RULE_WP
    node_noise = rule != RULE_WP and sigma > 0.0
    digital = readout != READOUT_ANP
    if not (two_noisy and node_noise):
        xi1[:] = 0
        zeta1[:] = 0
    if not node_noise:
        xi2[:] = 0
        zeta2[:] = 0
    if digital:
        zeta1[:] = 0
        zeta2[:] = 0
    lr_nb = lr / nb
    lrh_nb = lrh / nb
    eps_nb = eps / nb
    done = T
    for s in range(T):
        u = U[s]
        clock = counters[C_CLOCK]
        if refresh_every > 0 and clock - counters[C_LAST] >= refresh_every:
            last = counters[C_LAST]
            _refresh_tile(devH, twH, WH, scales[0], prm, rng_sub, clock, last, nbuf)
            if not digital:
                _refresh_tile(devO, twO, WO, scales[1], prm, rng_sub, clock, last, nbuf)
            if decor:
                _refresh_tile(devD, twD, WD, scales[2], prm, rng_sub, clock, last, nbuf)
            counters[C_LAST] = clock
        if node_noise:
            fill_normal(rng_node, sigma, xi2)
            if not digital:
                fill_normal(rng_node, sigma, zeta2)
            if two_noisy:
                fill_normal(rng_node, sigma, xi1)
                if not digital:
                    fill_normal(rng_node, sigma, zeta1)
        if is_wp:
            fill_normal(rng_node, sigma, EH)
            fill_normal(rng_node, sigma, EO)
        if resync_every > 0 and counters[C_RESYNC] % resync_every == 0:
            xh2[:] = xh1

        # Hidden tile: a = [A | R] [u, xh], both replicas, measured by the ADC.
        _hidden_input(zbuf, u, xh1, xh2, n_in)
        _dac(zbuf[Z_RAW], zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0], prm)
        _dac(zbuf[Z_Q2], zbuf[Z_Q2], zbuf[Z_SQ2], alpha[1], prm)
        _mvm(
            WH, scales[0], zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0], zbuf[Z_Q2], zbuf[Z_SQ2],
            alpha[1], True, EH, is_wp, xp1, xp2, nzH, prm, rng_sub,
        )  # fmt: skip
        for b in range(nb):
            for i in range(n):
                xp1[b, i] += xi1[b, i]
                xp2[b, i] += xi2[b, i]
        tanh_into(xp1, x1)
        tanh_into(xp2, x2)
        if decor:
            _dac(x1, xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], prm)
            _dac(x2, xbuf[Z_Q2], xbuf[Z_SQ2], alpha[1], prm)
            _mvm(
                WD, scales[2], xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], xbuf[Z_Q2], xbuf[Z_SQ2],
                alpha[1], True, EH, False, xhn1, xhn2, nzH, prm, rng_sub,
            )  # fmt: skip
        else:
            xhn1[:] = x1
            xhn2[:] = x2
        _leak(xhn1, xh1, leak)
        _leak(xhn2, xh2, leak)
        if digital:
            _features(feat, xhn1, u)
            _outputs(Bd, feat, xhn2, zeta1, zeta2, b1, b2, bin_, False, pred[s])
        else:
            _dac(xhn1, xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], prm)
            _dac(xhn2, xbuf[Z_Q2], xbuf[Z_SQ2], alpha[1], prm)
            _mvm(
                WO, scales[1], xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], xbuf[Z_Q2], xbuf[Z_SQ2],
                alpha[1], True, EO, is_wp, b1, b2, nzO, prm, rng_sub,
            )  # fmt: skip
            for b in range(nb):
                for o in range(b1.shape[1]):
                    b1[b, o] += zeta1[b, o]
                    b2[b, o] += zeta2[b, o]
                    pred[s, b, o] = b1[b, o]
        l1, l2 = _mean_losses(b1, b2, Y[s])
        loss1[s] = l1
        loss2[s] = l2
        if not (np.isfinite(l1) and np.isfinite(l2) and _all_finite(u)):
            done = s
            break

        if is_wp:
            k = lr * (l2 - l1) / sigma
            _apply_update(WH, devH, twH, chiH, scales[0], ch, zbuf[Z_RAW], 0.0, q, 0.0,
                          EH, k, pmax, prm, rng_sub, clock)  # fmt: skip
            _apply_update(WO, devO, twO, chiO, scales[1], co, xhn1, 0.0, q, 0.0,
                          EO, k, pmax, prm, rng_sub, clock)  # fmt: skip
        else:
            for b in range(nb):
                _coefficients(
                    rule, b, xp1, xp2, b1, b2, xi1, xi2, zeta1, zeta2, xhn1, Y[s],
                    gain, sigma, lr, out_cap, ch, co,
                )  # fmt: skip
            lh = exact_readout_hidden_step(lrh_nb, Bd, n) if digital else lrh_nb
            _apply_update(WH, devH, twH, chiH, scales[0], ch, zbuf[Z_RAW], lh, q, 0.0,
                          EH, 0.0, pmax, prm, rng_sub, clock)  # fmt: skip
            if readout == READOUT_NLMS:
                for b in range(nb):
                    nlms_coefficients(Bd, feat[b], Y[s, b], mu, co, b)
                _update_small(Bd, co, feat, 1.0 / nb)
            elif readout == READOUT_RLS:
                for b in range(nb):
                    rls_step(Bd, P, ph[0], pend, feat[b], Y[s, b], ph[1], lam, p0, dcounts,
                             D_RLS_RESET, D_RLS_BOUND)  # fmt: skip
            else:
                _apply_update(WO, devO, twO, chiO, scales[1], co, xhn1, lr_nb, q, 0.0,
                              EO, 0.0, pmax, prm, rng_sub, clock)  # fmt: skip
        if decor:
            decor_prepare(WD, xhn1, tmp, q)
            _apply_update(WD, devD, twD, chiD, scales[2], xhn1, tmp, eps_nb, q, eps_nb,
                          EH, 0.0, pmax, prm, rng_sub, clock)  # fmt: skip
        xh1[:] = xhn1
        xh2[:] = xhn2
        counters[C_RESYNC] += 1
        counters[C_CLOCK] += 1
    if readout == READOUT_RLS:
        rls_flush(P, ph[0], pend, lam)
    return done


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def analog_forward_block(
    WH, WO, WD, scales, prm, xh, U, pred, decor, rng, zbuf, xbuf, alpha, nzH, nzO, x, xhn,
    readout, Bd, feat, leak,
):  # fmt: skip
    """Predict a block through the noisy substrate (one replica, no learning, no time).

    Noise from ``rng`` (the evaluation generator); advances ``xh`` in place. The units
    leak and the readout is read as in :func:`analog_block` (the output tile, or ``Bd``
    over ``feat`` in the digital periphery).
    """
    _nb, _n = xh.shape
    n_in = U.shape[2]
    for s in range(U.shape[0]):
        u = U[s]
        _hidden_input(zbuf, u, xh, xh, n_in)
        _dac(zbuf[Z_RAW], zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0], prm)
        _mvm(WH, scales[0], zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0], zbuf[Z_Q1], zbuf[Z_SQ1],
             alpha[0], False, WH, False, xhn, xhn, nzH, prm, rng)  # fmt: skip
        tanh_into(xhn, x)
        if decor:
            _dac(x, xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], prm)
            _mvm(WD, scales[2], xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], xbuf[Z_Q1], xbuf[Z_SQ1],
                 alpha[0], False, WD, False, xhn, xhn, nzH, prm, rng)  # fmt: skip
        else:
            xhn[:] = x
        _leak(xhn, xh, leak)
        xh[:] = xhn
        if readout != READOUT_ANP:
            _features(feat, xh, u)
            for b in range(xh.shape[0]):
                for o in range(Bd.shape[0]):
                    acc = Bd.dtype.type(0)
                    for j in range(Bd.shape[1]):
                        acc += Bd[o, j] * feat[b, j]
                    pred[s, b, o] = acc
            continue
        _dac(xh, xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], prm)
        _mvm(WO, scales[1], xbuf[Z_Q1], xbuf[Z_SQ1], alpha[0], xbuf[Z_Q1], xbuf[Z_SQ1],
             alpha[0], False, WO, False, pred[s], pred[s], nzO, prm, rng)  # fmt: skip


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def mvm(W, scale, z, prm, rng, out, zbuf, alpha, nz):
    """One noisy MVM of one tile for a batch of inputs z (nb, cols) -> out (nb, rows)."""
    _dac(z, zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0], prm)
    _mvm(W, scale, zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0], zbuf[Z_Q1], zbuf[Z_SQ1], alpha[0],
         False, W, False, out, out, nz, prm, rng)  # fmt: skip
