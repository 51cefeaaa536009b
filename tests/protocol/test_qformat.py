"""The wire's Q formats: the host's conversions round and saturate as the device does."""

from __future__ import annotations

import numpy as np

from twinpass.protocol import qformat as qf


def test_host_conversions() -> None:
    q = qf.encode_activities([0.5, -1.25, 1e9])
    assert q.dtype == np.int32 and q.tolist() == [32768, -81920, 1 << 23]
    assert qf.decode_activities(q[:2]).tolist() == [0.5, -1.25]
    assert qf.decode_loss(1 << 31) == 0.5


def test_to_q_rounds_half_away_from_zero() -> None:
    assert [qf.to_q(v, 1) for v in (0.25, -0.25, 0.75, -0.75)] == [1, -1, 2, -2]
    q = qf.quantise_array(np.array([1e12, -1e12, np.nan]), qf.W_FRAC)
    assert q.tolist() == [qf.I32_MAX, qf.I32_MIN, 0]
