"""The network's parameters A, R, B, D and their initialisation (docs/design.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twinpass.kernels.api import Dims, network_dims

NAMES = ("A", "R", "B", "D")


@dataclass
class Params:
    """A (N x n_in) input, R (N x N) recurrent, B (n_out x N) readout, D (N x N) decorrelation."""

    A: np.ndarray
    R: np.ndarray
    B: np.ndarray
    D: np.ndarray

    def __post_init__(self) -> None:
        self.dims = network_dims(self.A, self.R, self.B, self.D)

    @classmethod
    def init(
        cls,
        n_in: int,
        n_hidden: int,
        n_out: int,
        *,
        seed: int = 0,
        dtype: str = "float32",
        spectral_radius: float | None = None,
        input_scale: float | None = None,
        readout_inputs: bool = False,
        zero_readout: bool = False,
    ) -> Params:
        """The initial network (docs/design.md §2); by default the reference code's.

        Default: Xavier-normal A, R, B and D = I. ``spectral_radius``: R is a standard
        normal matrix scaled to that spectral radius (the reservoir-computing draw, which
        gives the network a memory of that many time constants); ``input_scale``: A is
        uniform in [-s, s]. ``readout_inputs``: B gets n_in + 1 more columns (input and
        bias), started at 0. ``zero_readout``: B starts at 0 (for the exact readout rules,
        which need no symmetry breaking and start from the least-squares prior).
        """
        g = np.random.default_rng(seed)

        def xavier(fan_out: int, fan_in: int) -> np.ndarray:
            std = np.sqrt(2.0 / (fan_in + fan_out))
            return g.normal(0.0, std, (fan_out, fan_in))

        if input_scale is None:
            A = xavier(n_hidden, n_in)
        else:
            A = g.uniform(-input_scale, input_scale, (n_hidden, n_in))
        if spectral_radius is None:
            R = xavier(n_hidden, n_hidden)
        else:
            R = g.standard_normal((n_hidden, n_hidden))
            rho = float(np.max(np.abs(np.linalg.eigvals(R))))
            R *= spectral_radius / rho
        B = xavier(n_out, n_hidden)
        if zero_readout:
            B[...] = 0.0
        if readout_inputs:
            B = np.concatenate([B, np.zeros((n_out, n_in + 1))], axis=1)

        def f(m: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(m, dtype=dtype)

        return cls(A=f(A), R=f(R), B=f(B), D=np.eye(n_hidden, dtype=dtype))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], dtype: str | None = None) -> Params:
        """Build from a mapping with keys A, R, B, D (copies, C-contiguous)."""
        dt = np.dtype(dtype) if dtype is not None else np.asarray(arrays["A"]).dtype
        return cls(*(np.ascontiguousarray(np.array(arrays[k], dtype=dt)) for k in NAMES))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"A": self.A, "R": self.R, "B": self.B, "D": self.D}

    def astuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.A, self.R, self.B, self.D)

    def copy(self) -> Params:
        return Params(*(m.copy() for m in self.astuple()))

    def all_finite(self) -> bool:
        return all(bool(np.isfinite(m).all()) for m in self.astuple())

    def max_abs(self) -> float:
        return max(float(np.abs(m).max()) for m in self.astuple())

    @property
    def shape(self) -> Dims:
        return self.dims
