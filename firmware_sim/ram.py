"""The simulator's RAM budget (docs/protocol.md §7.3): what a model needs, what fits.

The C firmware lays its RAM out itself (``firmware/core/twinpass_core.c``,
``tp_model_words``) and keeps a reservation of its own; the simulator checks models, batch
sizes and evaluation batches against these numbers and reports the largest N that fits in
HELLO's ``max_hidden``.
"""

from __future__ import annotations

from twinpass.protocol.qformat import MAX_HIDDEN

#: RAM the firmware itself needs besides the model: receive and transmit buffers of
#: max_frame each, the reply cache (rx_window replies), stack and globals.
FIRMWARE_RESERVED = 16 * 1024


def ram_footprint(
    n_in: int,
    n_hidden: int,
    n_out: int,
    *,
    batch: int = 1,
    eval_batch: int = 1,
    d_present: bool = False,
    decorrelation: bool = False,
    readout_inputs: bool = False,
    rls: bool = False,
) -> int:
    """Bytes of RAM a model needs on the device (weights, both replicas, scratch).

    Weights: int32 A, R, B (n_out × F, F = N + n_in + 1 when the readout sees [xh, u, 1],
    else N), and D when stored or learned; the guard's vector (N). State: xh1, xh2
    (batch × N), the evaluation state (eval_batch × N). Scratch per step: pre-activations,
    new states and coefficients of both replicas (5 × batch × N), the reward variant's
    pending record (3 × batch × N + batch × n_in), outputs (4 × batch × n_out), replica
    1's features (batch × F), decorrelation scratch (batch × N + N); with the RLS readout
    ``rls``, P (F × F) and its g and k (2 × F). Everything int32.
    Excludes :data:`FIRMWARE_RESERVED`.
    """
    n = n_hidden
    f = n + (n_in + 1 if readout_inputs else 0)
    words = n * n_in + n * n + n_out * f + (n * n if d_present or decorrelation else 0) + n
    words += (2 * batch + eval_batch) * n
    words += 5 * batch * n + 3 * batch * n + batch * n_in + 4 * batch * n_out + batch * f
    if decorrelation:
        words += batch * n + n
    if rls:
        words += f * f + 2 * f
    return 4 * words


def largest_hidden(
    budget: int,
    n_in: int,
    n_out: int,
    *,
    batch: int = 1,
    d_present: bool = False,
    readout_inputs: bool = False,
    rls: bool = False,
) -> int:
    """The largest N whose :func:`ram_footprint` fits ``budget`` bytes (0 if none)."""
    lo, hi = 0, MAX_HIDDEN
    while lo < hi:
        mid = (lo + hi + 1) // 2
        need = ram_footprint(
            n_in,
            mid,
            n_out,
            batch=batch,
            d_present=d_present,
            readout_inputs=readout_inputs,
            rls=rls,
        )
        if need <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo
