"""Two-replica perturbation learning, one online update per timestep: ANP, NP and WP.

Every step runs two replicas of the network on the same input: replica 1 (clean, or noisy
in two-noisy-passes mode) and replica 2 (perturbed). The difference of their losses and of
their measured pre-activations gives a local update (docs/design.md §3). Nothing from past
steps is stored but what a step records for its own update, kept until its label arrives:
one ring slot per step of label delay (docs/design.md §6), one slot without delay. The
readout learns by the rule's own estimate or exactly, by RLS or NLMS (:mod:`.readout`).

Fusion. The rank-one update of R computed at step t is applied lazily, row by row, inside
the pass over R that computes step t+1's pre-activations of both replicas, so that R is
read once and written once per step; the decorrelation update of D is fused the same way
into the next pass over D. A block always ends with a flush of what is pending, so outside
a kernel call the parameters are up to date, and the bits do not depend on how a stream
was cut into blocks: the deferred and the flushed update evaluate the same expression (an
exact fused multiply-add, :mod:`.fma`). With a batch of one (streaming) each pass updates
a row and takes both products in one sweep, rows of R two at a time; a block's first step
applies a zero update there, so that every product of a stream comes from the same loop.

Noise is drawn from the explicit counter-based state ``rng`` (see :mod:`.rng`) in a fixed
order per step, documented on each kernel, so that a test can reproduce it exactly.

Per-sample, then batch mean: with ``nb`` independent streams, ``dl``, the norms and the
coefficient vectors are per stream, and the update is their mean over the batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activation import tanh_into
from .decorrelation import decor_prepare, decor_row_update, decor_row_update_and_dot2
from .guard import guard_radius
from .readout import READOUT_ANP, READOUT_NLMS, READOUT_RLS, nlms_coefficients, rls_flush, rls_step
from .rng import fill_normal_inline as fill_normal
from .rowops import dot_row, rank_update_row, update_and_dot2, update_and_dot2_pair

RULE_ANP = 0
RULE_NP = 1

# Reassociation lets LLVM vectorise the dot-product reductions; NaN and inf semantics are
# kept (no nnan/ninf) so that divergence is still detected, and no FMA contraction, so that
# the deferred and the immediate update of a weight round identically (the fused forms are
# written explicitly, see .fma). The kernels also use error_model="numpy": Python's would
# put a zero-division branch on every division, which stops loops from vectorising
# (divisions that can meet a zero are guarded explicitly).
FASTMATH = {"reassoc", "nsz"}
# The block kernels allocate nothing, so they run without Numba's reference-counting
# runtime (``_nrt=False``, a long-standing but underscored option of numba.jit). With it,
# every array view handed to an inlined helper costs an atomic increment and decrement:
# ~70 per step, 0.5 µs of a 3.3 µs step at N = 100. Without it, an allocation in a kernel
# is a compile error, which also enforces docs/design.md §7's "no allocation in the hot loop".
# Whole-array assignments (``a[:] = b``) need the runtime for their error path: the
# kernels copy with :func:`_copy` instead.
BLOCK_JIT = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy", "_nrt": False}

# The larger once-a-step helpers (the update's coefficients, the decorrelated state, and
# the readout's RLS and NLMS steps in .readout) are compiled out of line with the block
# kernels' flags: inlined at Numba's IR level they made a cold compile of the host
# learner's float32 path take 77 s, 47 s out of line, at the same speed
# (benchmarks/compile_time.py, RESULTS). The smaller ones stay inlined: out of line too
# they compiled faster still, but ANP's step at N = 100 lost 9 % to passing arrays by value
# (26 argument structs for _forward).
STEP_JIT = {"fastmath": FASTMATH, "error_model": "numpy", "_nrt": False}

# Rows of the (nw, nb, N) hidden work array: per-step scratch.
W_X1, W_X2, W_XHN1, W_XHN2, W_CH, W_AU = range(6)
N_WORK = 6
# Rows of the (no, nb, n_out) output work array.
O_CO, O_BIN = range(2)
N_WORK_OUT = 2
# Rows of the (3, nb, N) pending-update array: R's coefficients and presynaptic vectors,
# and D's pending tmp = xhᵀD; the pending decorrelation vector is the state xh1 itself.
P_RC, P_RP, P_DT = range(3)
N_PEND = 3
# What a step records for its update, one slot per step whose label has not arrived yet
# (a ring of max(delay, 1) slots, docs/design.md §6). Rows of the (slots, 5, nb, N)
# hidden record: both replicas' measured pre-activations, replica 1's state before the
# step (R's presynaptic vector), both replicas' node noise (NP reads it).
H_XP1, H_XP2, H_XPREV, H_XI1, H_XI2 = range(5)
N_REC_H = 5
# Rows of the (slots, 4, nb, n_out) output record: both outputs and both output noises.
R_B1, R_B2, R_Z1, R_Z2 = range(4)
N_REC_O = 4
# Entries of the int64 ``counts`` state array.
C_TOTAL, C_FILL, C_HEAD, C_GUARD, C_RLS_RESET, C_RLS_BOUND, C_UNLABELLED = range(7)
N_COUNTS = 7


@njit(inline="always")
def _copy(dst, src):
    """``dst[...] = src`` for two (nb, N) arrays, without the runtime."""
    for b in range(dst.shape[0]):
        for i in range(dst.shape[1]):
            dst[b, i] = src[b, i]


@njit(inline="always")
def _zero(dst):
    """``dst[...] = 0`` for an (nb, N) array, without the runtime."""
    for b in range(dst.shape[0]):
        for i in range(dst.shape[1]):
            dst[b, i] = 0


@njit(inline="always")
def _preactivations(A, u, same, xi1, xi2, xp1, xp2, au):
    """Batch of one: add the input's share and the noise to the recurrent products.

    On entry xp1, xp2 hold ``R xh1``, ``R xh2``; on exit the measured pre-activations.
    Separate from the pass over R, in loops over the units that vectorise (a per-row dot
    product with A inside that pass cost 15% of a step at N = 100, n_in = 1); one loop per
    replica keeps each simple enough for the vectoriser. ``au`` is scratch for ``A u``,
    summed over inputs in order, as :func:`.rowops.dot_row` does. With ``same`` (replica 2
    just resynchronised) replica 2 takes replica 1's products: equal already, since the
    states are equal, but stated rather than left to the compiler.
    """
    n = xp1.shape[1]
    if same:
        for i in range(n):
            xp2[0, i] = xp1[0, i]
    for i in range(n):
        au[0, i] = 0
    for k in range(A.shape[1]):
        uk = u[0, k]
        for i in range(n):
            au[0, i] += A[i, k] * uk
    for i in range(n):
        xp1[0, i] = (au[0, i] + xp1[0, i]) + xi1[0, i]
    for i in range(n):
        xp2[0, i] = (au[0, i] + xp2[0, i]) + xi2[0, i]


@njit(**STEP_JIT)
def _decorrelated_state(D, x1, x2, xhn1, xhn2, decor, pend_d, tmp, xh_prev, eps_scale, q):
    """xh = D x for both replicas in one pass over D, applying a pending decorrelation update.

    ``tmp`` is the pending update's ``xh_prevᵀ D`` (``pend[P_DT]``; zeros when nothing is
    pending, for the batch-of-one sweep).
    """
    nb, n = x1.shape
    if not decor:
        _copy(xhn1, x1)
        _copy(xhn2, x2)
        return
    if nb == 1:
        for i in range(n):
            r1, r2 = decor_row_update_and_dot2(D, i, xh_prev, tmp, q, eps_scale, pend_d, x1, x2)
            xhn1[0, i] = r1
            xhn2[0, i] = r2
        return
    for i in range(n):
        if pend_d:
            decor_row_update(D, i, xh_prev, tmp, q, eps_scale)
        for b in range(nb):
            xhn1[b, i] = dot_row(D, i, x1, b)
            xhn2[b, i] = dot_row(D, i, x2, b)


@njit(inline="always")
def _leak(xhn, xh, leak):
    """Leaky integration ``xhn <- (1 - α) xh + α xhn`` (α = 1: nothing to do)."""
    if leak < 1.0:
        keep = xhn.dtype.type(1.0 - leak)
        a = xhn.dtype.type(leak)
        for b in range(xhn.shape[0]):
            for i in range(xhn.shape[1]):
                xhn[b, i] = keep * xh[b, i] + a * xhn[b, i]


@njit(inline="always")
def _features(f, xhn, u):
    """The readout's features of each stream: ``[xh, u, 1]``, or ``xh`` when f is N wide."""
    nb, n = xhn.shape
    F = f.shape[1]
    for b in range(nb):
        for i in range(n):
            f[b, i] = xhn[b, i]
        if F > n:
            for k in range(u.shape[1]):
                f[b, n + k] = u[b, k]
            f[b, F - 1] = 1


@njit(inline="always")
def _outputs(B, f1, xhn2, zeta1, zeta2, b1, b2, bin_, noisy_out, pred_s):
    """Linear readout of both replicas; replica 1's output is the step's prediction.

    Replica 1 reads its features f1; replica 2 its hidden state xhn2 with replica 1's
    input and bias columns (the same u, so their share ``bin_`` is computed once).
    ``noisy_out``: add the output noise zeta (the perturbation rule's own readout).
    """
    n = xhn2.shape[1]
    F = B.shape[1]
    for b in range(f1.shape[0]):
        for o in range(B.shape[0]):
            acc = B.dtype.type(0)
            for j in range(n, F):
                acc += B[o, j] * f1[b, j]
            bin_[b, o] = acc
            h1 = B.dtype.type(0)
            h2 = B.dtype.type(0)
            for j in range(n):
                h1 += B[o, j] * f1[b, j]
                h2 += B[o, j] * xhn2[b, j]
            b1[b, o] = h1 + acc
            b2[b, o] = h2 + acc
            if noisy_out:
                b1[b, o] += zeta1[b, o]
                b2[b, o] += zeta2[b, o]
            pred_s[b, o] = b1[b, o]


@njit(inline="always")
def _all_finite(u):
    """An infinite input saturates tanh, so the losses stay finite: check inputs too."""
    for b in range(u.shape[0]):
        for j in range(u.shape[1]):
            if not np.isfinite(u[b, j]):
                return False
    return True


@njit(inline="always")
def _stream_loss(bb, ystar, b):
    """Loss of stream b: mean over outputs of the squared error, in float64."""
    n_out = bb.shape[1]
    tot = 0.0
    for o in range(n_out):
        e = np.float64(bb[b, o]) - ystar[b, o]
        tot += e * e
    return tot / n_out


@njit(inline="always")
def _mean_losses(b1, b2, ystar):
    """The replicas' losses, mean over outputs and batch."""
    nb = b1.shape[0]
    l1 = 0.0
    l2 = 0.0
    for b in range(nb):
        l1 += _stream_loss(b1, ystar, b)
        l2 += _stream_loss(b2, ystar, b)
    return l1 / nb, l2 / nb


@njit(**STEP_JIT)
def update_coefficients(
    rule, b, xp1, xp2, b1, b2, xi1, xi2, zeta1, zeta2, f1, ystar,
    gain, sigma, lr, out_cap, ch, co,
):  # fmt: skip
    """Stream b's coefficient vectors of the ANP or NP update: ``ch[b]`` (hidden), ``co[b]``.

    The one place where the rules of docs/design.md §3 are written; the host kernel and
    the analog kernel (:mod:`.analog`) both call it. ANP reads only measured quantities: the
    replicas' pre-activations ``xp`` (noise included) and outputs ``b``; NP reads its own
    noise samples ``xi``, ``zeta``. ``f1`` is replica 1's readout input after this step
    (its norm sets the output cap). The update is then ``W -= lr * c ⊗ presynaptic``.
    """
    n = xp1.shape[1]
    n_out = b1.shape[1]
    dl = _stream_loss(b2, ystar, b) - _stream_loss(b1, ystar, b)
    if rule == RULE_ANP:
        nda = 0.0
        for i in range(n):
            d = np.float64(xp2[b, i]) - xp1[b, i]
            nda += d * d
        # ‖δa‖² = 0 happens (identical replicas): no information, no update.
        kh = gain * dl / nda if nda > 0.0 else 0.0
        for i in range(n):
            ch[b, i] = kh * (np.float64(xp2[b, i]) - xp1[b, i])
        ndb = 0.0
        for o in range(n_out):
            d = np.float64(b2[b, o]) - b1[b, o]
            ndb += d * d
        ko = gain * dl / ndb if ndb > 0.0 else 0.0
        if out_cap:
            nx = 0.0
            for j in range(f1.shape[1]):
                nx += np.float64(f1[b, j]) * f1[b, j]
            g = lr * gain * nx
            if g > 0.5:
                ko *= 0.5 / g
        for o in range(n_out):
            co[b, o] = ko * (np.float64(b2[b, o]) - b1[b, o])
    else:
        k = dl / sigma
        for i in range(n):
            ch[b, i] = k * (np.float64(xi2[b, i]) - xi1[b, i])
        for o in range(n_out):
            co[b, o] = k * (np.float64(zeta2[b, o]) - zeta1[b, o])


@njit(inline="always")
def exact_readout_hidden_step(lrh_nb, B, n):
    """The hidden layer's step under an exact readout: ``lrh_nb / (1 + ‖B_h‖²)``.

    The loss difference scales with the readout's weights on the hidden state (its first
    ``n`` columns), and an exact readout's can be large: normalised so, the change the
    hidden step makes in the output is the same whatever the readout's scale
    (docs/design.md §5).
    """
    nbh = 1.0
    for o in range(B.shape[0]):
        for j in range(n):
            nbh += np.float64(B[o, j]) * B[o, j]
    return lrh_nb / nbh


@njit(inline="always")
def _update_small(M, c, p, scale):
    """Immediate update of a small matrix (A or B): M -= scale * sum_b c[b] ⊗ p[b].

    One stream at a time, with the longer side innermost so that the loop vectorises: B
    (n_out x F) by rows, A (N x n_in, often one column) by columns. Each element gets the
    same expression either way.
    """
    for b in range(c.shape[0]):
        if M.shape[1] >= M.shape[0]:
            for i in range(M.shape[0]):
                k = M.dtype.type(scale * c[b, i])
                for j in range(M.shape[1]):
                    M[i, j] = M[i, j] - k * p[b, j]
        else:
            for j in range(M.shape[1]):
                pj = p[b, j]
                for i in range(M.shape[0]):
                    M[i, j] = M[i, j] - M.dtype.type(scale * c[b, i]) * pj


@njit(inline="always")
def _flush(R, D, pend, xh1, q, eps_scale, pend_r, pend_d):
    """Apply what is pending so that the parameters are current when the kernel returns."""
    if pend_r:
        pc = pend[P_RC]
        pp = pend[P_RP]
        for i in range(R.shape[0]):
            rank_update_row(R, i, pc, pp)
    if pend_d:
        pdt = pend[P_DT]
        for i in range(D.shape[0]):
            decor_row_update(D, i, xh1, pdt, q, eps_scale)


@njit(inline="always")
def _labelled(ys):
    """False if any target of the step is NaN: the step is predicted but not learned."""
    for b in range(ys.shape[0]):
        for o in range(ys.shape[1]):
            if np.isnan(ys[b, o]):
                return False
    return True


@njit(inline="always")
def _learn_recorded(
    rule, readout, A, B, P, ph, pp_flag, rh, ro, rf, ru, ys,
    gain, sigma, lr_nb, lrh_nb, lr, mu, lam, p0, out_cap, ch, co, pc, pp, counts,
):  # fmt: skip
    """Learn one recorded step (rh, ro, rf, ru: its ring slot) from its label ``ys``.

    Applies A's and the readout's updates at once and leaves R's in (pc, pp), pending for
    the next pass over R. Returns (status, loss1, loss2): status 1 learned, 0 no label
    (NaN in ``ys``; counted), -1 a loss that is not finite (nothing applied).
    """
    nb = rf.shape[0]
    if not _labelled(ys):
        counts[C_UNLABELLED] += 1
        return 0, np.nan, np.nan
    b1 = ro[R_B1]
    b2 = ro[R_B2]
    l1, l2 = _mean_losses(b1, b2, ys)
    if not (np.isfinite(l1) and np.isfinite(l2)):
        return -1, l1, l2
    xp1 = rh[H_XP1]
    xp2 = rh[H_XP2]
    for b in range(nb):
        update_coefficients(
            rule, b, xp1, xp2, b1, b2, rh[H_XI1], rh[H_XI2], ro[R_Z1], ro[R_Z2], rf, ys,
            gain, sigma, lr, out_cap, ch, co,
        )  # fmt: skip
    if readout != READOUT_ANP:
        lrh_nb = exact_readout_hidden_step(lrh_nb, B, xp1.shape[1])
    _update_small(A, ch, ru, lrh_nb)
    if readout == READOUT_ANP:
        _update_small(B, co, rf, lr_nb)
    elif readout == READOUT_NLMS:
        for b in range(nb):
            nlms_coefficients(B, rf[b], ys[b], mu, co, b)
        _update_small(B, co, rf, 1.0 / nb)
    else:
        # One exact RLS sample per stream, in stream order; ph[0] is the pending update
        # of P, ph[1] scratch for g.
        for b in range(nb):
            rls_step(B, P, ph[0], pp_flag, rf[b], ys[b], ph[1], lam, p0, counts,
                     C_RLS_RESET, C_RLS_BOUND)  # fmt: skip
    # R's update pairs this step's coefficients with the state before it.
    xprev = rh[H_XPREV]
    for b in range(nb):
        for i in range(xp1.shape[1]):
            pc[b, i] = lrh_nb * ch[b, i]
            pp[b, i] = xprev[b, i]
    return 1, l1, l2


@njit(inline="always")
def _forward(
    A, R, B, D, xh1, xh2, counter, rng, u, pred_s, rh, ro, rf, ru,
    sigma, eps_scale, decor, two_noisy, resync_every, noisy_out, leak, pend_d,
    work, work_out, pend, q,
):  # fmt: skip
    """Both replicas' forward pass of one step, recorded into its ring slot.

    The pending update of R is applied in the pass over R (and zeroed), the pending
    decorrelation update in the pass over D. The states xh1, xh2 are not advanced: the
    new ones are in ``work[W_XHN1]``, ``work[W_XHN2]``. Returns False if the input or an
    output is not finite.
    """
    nb, n = xh1.shape
    xp1 = rh[H_XP1]
    xp2 = rh[H_XP2]
    xi1 = rh[H_XI1]
    xi2 = rh[H_XI2]
    b1 = ro[R_B1]
    b2 = ro[R_B2]
    zeta1 = ro[R_Z1]
    zeta2 = ro[R_Z2]
    x1 = work[W_X1]
    x2 = work[W_X2]
    xhn1 = work[W_XHN1]
    xhn2 = work[W_XHN2]
    pc = pend[P_RC]
    pp = pend[P_RP]
    fill_normal(rng, sigma, xi2)
    if noisy_out:
        fill_normal(rng, sigma, zeta2)
    if two_noisy:
        fill_normal(rng, sigma, xi1)
        if noisy_out:
            fill_normal(rng, sigma, zeta1)
    same = False
    if resync_every > 0 and counter[0] % resync_every == 0:
        _copy(xh2, xh1)
        same = True
    _copy(rh[H_XPREV], xh1)
    _copy(ru, u)
    # Hidden pre-activations of both replicas: one pass over R, which first takes the
    # pending update.
    if nb == 1:
        # The streaming case: update and both products in one sweep, two rows at a time
        # (each load of xh1, xh2 and the presynaptic vector serves two rows).
        for i in range(0, n - 1, 2):
            r1, r2, r1k, r2k = update_and_dot2_pair(R, i, pc, pp, xh1, xh2)
            xp1[0, i] = r1
            xp2[0, i] = r2
            xp1[0, i + 1] = r1k
            xp2[0, i + 1] = r2k
        if n % 2 == 1:
            r1, r2 = update_and_dot2(R, n - 1, pc, pp, xh1, xh2)
            xp1[0, n - 1] = r1
            xp2[0, n - 1] = r2
        _preactivations(A, u, same, xi1, xi2, xp1, xp2, work[W_AU])
    else:
        for i in range(n):
            rank_update_row(R, i, pc, pp)
            for b in range(nb):
                au = dot_row(A, i, u, b)
                a1 = au + dot_row(R, i, xh1, b)
                a2 = a1 if same else au + dot_row(R, i, xh2, b)
                xp1[b, i] = a1 + xi1[b, i]
                xp2[b, i] = a2 + xi2[b, i]
    # Applied: nothing is pending until the next update.
    _zero(pc)
    tanh_into(xp1, x1)
    tanh_into(xp2, x2)
    _decorrelated_state(D, x1, x2, xhn1, xhn2, decor, pend_d, pend[P_DT], xh1, eps_scale, q)
    _leak(xhn1, xh1, leak)
    _leak(xhn2, xh2, leak)
    _features(rf, xhn1, u)
    _outputs(B, rf, xhn2, zeta1, zeta2, b1, b2, work_out[O_BIN], noisy_out, pred_s)
    return _all_finite(u) and _all_finite(b1) and _all_finite(b2)


@njit(**BLOCK_JIT)
def perturbation_block(
    A, R, B, D,
    xh1, xh2, counter, rng,
    U, Y, pred, loss1, loss2,
    rule, lr, lr_h, sigma, eps, gain, decor, two_noisy, resync_every, out_cap,
    readout, leak, mu, lam, p0, radius_bound, guard_every, delay,
    work, work_out, pend, q,
    rec_h, rec_o, rec_f, rec_u, P, ph, pp_flag, counts, gv, gw,
):  # fmt: skip
    """ANP or NP over a block of T steps; returns the number of steps completed.

    Parameters A (N,n_in), R (N,N), B (n_out,F), D (N,N) and the replicas' hidden states
    xh1, xh2 (nb,N) are updated in place; ``counter[0]`` counts steps since the last state
    reset (it drives the resynchronisation). U (T,nb,n_in), Y (T,nb,n_out) are read;
    pred (T,nb,n_out) gets replica 1's output of each step, made before any update that
    needs that step's label; loss1/loss2 (T,) float64 the replicas' losses (mean over
    outputs and batch) of the step learned at step s (NaN when none is).

    The network (docs/design.md §2): a = A u + R xh + ξ, xh' = (1 - leak) xh + leak D
    tanh(a), and a readout over f = [xh', u, 1] (F = N + n_in + 1) or xh' alone (F = N,
    the paper's). rule: RULE_ANP or RULE_NP, the hidden layer's rule, step ``lr_h``.
    readout: READOUT_ANP (the rule's own estimate, step ``lr``, output noise zeta on),
    READOUT_NLMS (step ``mu``) or READOUT_RLS (forgetting ``lam``, prior ``p0``; state P,
    and ph[0], pp_flag: P's pending update, ph[1] scratch). gain: the factor of the ANP
    step (sqrt(N_tot) in the reference). out_cap: cap ANP's readout step at the
    normalised-LMS bound ``lr * gain * ‖f1‖² <= 0.5`` per stream. resync_every: k > 0
    copies replica 1's hidden state into replica 2 at every step whose counter is a
    multiple of k (0: never).

    delay d (docs/design.md §6): Y[s] is the label of step s - d. With d = 0 step s runs
    its forward pass, then learns from Y[s]. With d >= 1 step s first learns step s - d
    (recorded in the ring slot it is about to reuse) from Y[s], then runs its forward
    pass, whose output is the forecast of the label that arrives at step s + d. The first
    d labels after a state reset belong to no recorded step and are ignored. A NaN label
    means "no label": that step is not learned (counted in ``counts[C_UNLABELLED]``).

    Guard: with radius_bound > 0, every ``guard_every`` steps (``counts[C_TOTAL]``) R's
    spectral radius is estimated from the warm-start vector gv (float64 scratch gw) and R
    is scaled onto the bound if above it (counted in ``counts[C_GUARD]``).

    Noise drawn per step, in this order: xi2 (nb*N), zeta2 (nb*n_out, readout ANP only),
    then, in two-noisy mode, xi1 (nb*N), zeta1 (nb*n_out, readout ANP only); all with
    standard deviation sigma.

    A step whose input, outputs or loss are not finite is reported (its prediction and
    losses written) and the kernel returns its index. Nothing of it is applied, except,
    with d >= 1, the update of step s - d, whose loss was finite.
    """
    T = U.shape[0]
    nb, n = xh1.shape
    lr_nb = lr / nb
    lrh_nb = lr_h / nb
    eps_scale = eps / nb
    ch = work[W_CH]
    co = work_out[O_CO]
    pc = pend[P_RC]
    pp = pend[P_RP]
    pdt = pend[P_DT]
    noisy_out = readout == READOUT_ANP
    slots = rec_h.shape[0]
    # Nothing is pending at a block's start; the batch-of-one passes apply a zero update
    # (fma(-0, 0, r) == r, bit for bit), so every step of a stream takes the same path.
    _zero(pc)
    _zero(pp)
    _zero(pdt)
    pend_r = False
    pend_d = False
    done = T
    for s in range(T):
        ys = Y[s]
        if radius_bound > 0.0 and counts[C_TOTAL] > 0 and counts[C_TOTAL] % guard_every == 0:
            if pend_r:
                for i in range(n):
                    rank_update_row(R, i, pc, pp)
                _zero(pc)
                pend_r = False
            if guard_radius(R, gv, gw, radius_bound):
                counts[C_GUARD] += 1
        slot = counts[C_HEAD]
        rh = rec_h[slot]
        ro = rec_o[slot]
        rf = rec_f[slot]
        ru = rec_u[slot]
        loss1[s] = np.nan
        loss2[s] = np.nan
        if delay > 0 and counts[C_FILL] >= delay:
            st, l1, l2 = _learn_recorded(
                rule, readout, A, B, P, ph, pp_flag, rh, ro, rf, ru, ys,
                gain, sigma, lr_nb, lrh_nb, lr, mu, lam, p0, out_cap, ch, co, pc, pp, counts,
            )  # fmt: skip
            loss1[s] = l1
            loss2[s] = l2
            if st < 0:
                done = s
                break
            pend_r = st == 1
        ok = _forward(
            A, R, B, D, xh1, xh2, counter, rng, U[s], pred[s], rh, ro, rf, ru,
            sigma, eps_scale, decor, two_noisy, resync_every, noisy_out, leak, pend_d,
            work, work_out, pend, q,
        )  # fmt: skip
        pend_r = False
        pend_d = False
        if not ok:
            done = s
            break
        if delay == 0:
            st, l1, l2 = _learn_recorded(
                rule, readout, A, B, P, ph, pp_flag, rh, ro, rf, ru, ys,
                gain, sigma, lr_nb, lrh_nb, lr, mu, lam, p0, out_cap, ch, co, pc, pp, counts,
            )  # fmt: skip
            loss1[s] = l1
            loss2[s] = l2
            if st < 0:
                done = s
                break
            pend_r = st == 1
        # The step is taken: advance the states.
        _copy(xh1, work[W_XHN1])
        _copy(xh2, work[W_XHN2])
        if decor:
            decor_prepare(D, xh1, pdt, q)
            pend_d = True
        counter[0] += 1
        counts[C_TOTAL] += 1
        if counts[C_FILL] < delay:
            counts[C_FILL] += 1
        counts[C_HEAD] = (slot + 1) % slots
    _flush(R, D, pend, xh1, q, eps_scale, pend_r, pend_d)
    if readout == READOUT_RLS:
        rls_flush(P, ph[0], pp_flag, lam)
    return done


@njit(**BLOCK_JIT)
def wp_block(
    A, R, B, D,
    xh1, xh2, counter, rng,
    U, Y, pred, loss1, loss2,
    lr, sigma, eps, decor, resync_every, leak, radius_bound, guard_every,
    work, work_out, pend, q, rec_h, rec_o, rec_f, counts, gv, gw, EA, ER, EB,
):  # fmt: skip
    """Weight perturbation over a block; same conventions as :func:`perturbation_block`.

    Replica 2 runs with A+E_A, R+E_R, B+E_B (fresh Gaussian noise of standard deviation
    sigma each step, shared by the batch); the update is ``(mean_b dl_b / sigma) E``.
    EA, ER, EB are scratch of the parameters' shapes (B's: n_out x F, so the perturbation
    covers the input and bias columns of the readout too). R's update is deferred into
    the next step's pass over R, which also draws that step's E_R row by row. WP learns
    its readout by its own estimate, with no label delay; the leak, the guard and a NaN
    label (predicted, not learned) are as in :func:`perturbation_block`.

    Noise drawn per step, in this order: E_A (N*n_in), then E_R one row at a time
    (N draws of N), then E_B (n_out*F).
    """
    T = U.shape[0]
    nb, n = xh1.shape
    F = B.shape[1]
    eps_scale = eps / nb
    xp1 = rec_h[0, H_XP1]
    xp2 = rec_h[0, H_XP2]
    x1 = work[W_X1]
    x2 = work[W_X2]
    xhn1 = work[W_XHN1]
    xhn2 = work[W_XHN2]
    b1 = rec_o[0, R_B1]
    b2 = rec_o[0, R_B2]
    f1 = rec_f[0]
    pdt = pend[P_DT]
    _zero(pdt)  # nothing pending yet (see perturbation_block)
    pend_r = False
    pend_d = False
    k_prev = 0.0
    done = T
    for s in range(T):
        u = U[s]
        if radius_bound > 0.0 and counts[C_TOTAL] > 0 and counts[C_TOTAL] % guard_every == 0:
            if pend_r:
                for i in range(n):
                    for j in range(n):
                        R[i, j] = R[i, j] - k_prev * ER[i, j]
                pend_r = False
            if guard_radius(R, gv, gw, radius_bound):
                counts[C_GUARD] += 1
        same = False
        if resync_every > 0 and counter[0] % resync_every == 0:
            _copy(xh2, xh1)
            same = True
        fill_normal(rng, sigma, EA)
        for i in range(n):
            if pend_r:
                for j in range(n):
                    R[i, j] = R[i, j] - k_prev * ER[i, j]
            fill_normal(rng, sigma, ER[i])
            for b in range(nb):
                au = dot_row(A, i, u, b)
                r1 = dot_row(R, i, xh1, b)
                r2 = r1 if same else dot_row(R, i, xh2, b)
                xp1[b, i] = au + r1
                xp2[b, i] = (au + dot_row(EA, i, u, b)) + (r2 + dot_row(ER, i, xh2, b))
        pend_r = False
        tanh_into(xp1, x1)
        tanh_into(xp2, x2)
        _decorrelated_state(D, x1, x2, xhn1, xhn2, decor, pend_d, pdt, xh1, eps_scale, q)
        pend_d = False
        _leak(xhn1, xh1, leak)
        _leak(xhn2, xh2, leak)
        _features(f1, xhn1, u)
        fill_normal(rng, sigma, EB)
        for b in range(nb):
            for o in range(B.shape[0]):
                h1 = B.dtype.type(0)
                h2 = B.dtype.type(0)
                e2 = B.dtype.type(0)
                for j in range(n):
                    h1 += B[o, j] * f1[b, j]
                    h2 += B[o, j] * xhn2[b, j]
                    e2 += EB[o, j] * xhn2[b, j]
                for j in range(n, F):
                    h1 += B[o, j] * f1[b, j]
                    h2 += B[o, j] * f1[b, j]
                    e2 += EB[o, j] * f1[b, j]
                b1[b, o] = h1
                b2[b, o] = h2 + e2
                pred[s, b, o] = b1[b, o]
        loss1[s] = np.nan
        loss2[s] = np.nan
        if not (_all_finite(u) and _all_finite(b1) and _all_finite(b2)):
            done = s
            break
        if not _labelled(Y[s]):
            counts[C_UNLABELLED] += 1
        else:
            l1, l2 = _mean_losses(b1, b2, Y[s])
            loss1[s] = l1
            loss2[s] = l2
            if not (np.isfinite(l1) and np.isfinite(l2)):
                done = s
                break
            dl = l2 - l1
            k = lr * dl / sigma
            for i in range(A.shape[0]):
                for j in range(A.shape[1]):
                    A[i, j] = A[i, j] - k * EA[i, j]
            for i in range(B.shape[0]):
                for j in range(B.shape[1]):
                    B[i, j] = B[i, j] - k * EB[i, j]
            k_prev = k
            pend_r = True
        _copy(xh1, xhn1)
        _copy(xh2, xhn2)
        if decor:
            decor_prepare(D, xh1, pdt, q)
            pend_d = True
        counter[0] += 1
        counts[C_TOTAL] += 1
    if pend_r:
        for i in range(n):
            for j in range(n):
                R[i, j] = R[i, j] - k_prev * ER[i, j]
    _flush(R, D, pend, xh1, q, eps_scale, False, pend_d)
    return done
