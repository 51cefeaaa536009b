"""The model image: round trip, identity D, rejection of bad images, RAM footprint."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from twinpass.core.errors import CheckpointError
from twinpass.protocol import model_image as mi
from twinpass.protocol.hyper import Hyper
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK


def params(n=6, n_in=2, n_out=1, seed=0) -> dict[str, np.ndarray]:
    return Params.init(n_in, n, n_out, seed=seed).arrays()


def test_round_trip_within_half_an_lsb_and_d_identity_is_omitted() -> None:
    p = params()
    image = mi.quantise(p, RuleConfig(**PAPER_NETWORK).resolve(2, 6, 1))
    assert len(image) == mi.image_size(2, 6, 1, d_present=False)
    m = mi.parse(image)
    assert m.shape == (2, 6, 1) and m.D is None
    assert m.hyper.resync_every == 10 and m.hyper.output_cap
    back = mi.dequantise(image, "float64")
    for k in "ARBD":
        assert np.max(np.abs(back[k] - p[k])) <= 2.0**-25 + 1e-12, k
    assert mi.sha256(image) == mi.sha256(bytes(image)) and len(mi.sha256(image)) == 32
    # Deterministic: the same model, the same bytes.
    assert mi.quantise(p, RuleConfig(**PAPER_NETWORK).resolve(2, 6, 1)) == image


def test_a_non_identity_d_is_stored() -> None:
    p = params()
    p["D"] = p["D"] + 0.01
    image = mi.quantise(p, Hyper())
    m = mi.parse(image)
    assert m.D is not None
    assert np.allclose(mi.dequantise(m)["D"], p["D"], atol=1e-7)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: p.pop("R"), "lacks"),
        (lambda p: p["A"].__setitem__((0, 0), np.nan), "non-finite"),
        (lambda p: p["B"].__setitem__((0, 0), 200.0), "magnitude"),
    ],
    ids=["missing", "nan", "too_big"],
)
def test_quantise_refuses_bad_models(change, match) -> None:
    p = params()
    change(p)
    with pytest.raises(mi.ModelImageError, match=match):
        mi.quantise(p, Hyper())


def test_every_corrupted_byte_and_every_truncation_is_refused() -> None:
    image = mi.quantise(params(n=3), Hyper())
    for i in range(len(image)):
        bad = bytearray(image)
        bad[i] ^= 0x10
        with pytest.raises(CheckpointError):
            mi.parse(bytes(bad))
    for n in range(len(image)):
        with pytest.raises(mi.ModelImageError):
            mi.parse(image[:n])
    with pytest.raises(mi.ModelImageError, match="truncated or padded"):
        mi.parse(image + b"\0")


def test_messages_name_the_problem() -> None:
    image = bytearray(mi.quantise(params(n=3), Hyper()))
    with pytest.raises(mi.ModelImageError, match="not a twinpass model image"):
        mi.parse(b"XXXX" + bytes(image[4:]))
    # Another format, older or newer, with a valid header CRC: refused by its version,
    # naming both (not as a corrupted image).
    for version in (1, 3):
        other = bytearray(image)
        other[4:6] = struct.pack("<H", version)
        other[92:96] = struct.pack("<I", zlib.crc32(bytes(other[:92])))
        with pytest.raises(
            mi.ModelImageError,
            match=f"format {version} is not supported \\(this firmware reads format 2\\)",
        ):
            mi.parse(bytes(other))
    payload_hit = bytearray(image)
    payload_hit[mi.HEADER.size + 6] ^= 1
    with pytest.raises(mi.ModelImageError, match="payload CRC"):
        mi.parse(bytes(payload_hit))
