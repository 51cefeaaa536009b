"""Arbitrary bytes into the CSV file and stdin sources: only the project's own errors come
out (never a _csv.Error, UnicodeError or IndexError), and an error about a row names its
line."""

from __future__ import annotations

import io
import os
import re
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinpass.core.errors import TwinpassError
from twinpass.runtime.csv_rows import RowParser
from twinpass.runtime.sources import CsvFileSource, StdinSource

# Errors about the whole input rather than a row: they have no line to name.
_WHOLE_INPUT = re.compile(
    r"empty input|no data rows|choose the column|no column|the columns are not known|"
    r"none of the first"
)

# Bytes that make CSV interesting: separators, quotes, line ends, NUL, digits, exponents.
_ALPHABET = st.sampled_from(
    [b",", b'"', b"\n", b"\r", b"\r\n", b"\x00", b"1", b"2.5", b"-", b"e", b"1e30", b"1e200",
     b"nan", b" ", b"a", b"b", b"\xff", b"\xef\xbb\xbf", b"9" * 70_000]
)  # fmt: skip
_DATA = st.one_of(
    st.binary(max_size=400),
    st.lists(_ALPHABET, max_size=60).map(b"".join),
    st.lists(_ALPHABET, max_size=60).map(lambda parts: b"a,b\n1,2\n" + b"".join(parts)),
)


def _drain(src, name: str) -> None:
    try:
        if not src.start():
            return
        for _ in range(10_000):
            block = src.read(7)
            assert np.all(np.isnan(block.values) | (np.abs(block.values) < 3.5e38))
            if block.error is not None:
                raise block.error
            if block.eof:
                return
    except TwinpassError as e:
        text = str(e)
        assert "\n" not in text.strip(), text
        assert re.match(rf"{re.escape(name)}:\d+: ", text) or _WHOLE_INPUT.search(text), text
    finally:
        src.close() if hasattr(src, "close") else None


@pytest.mark.parametrize("policy", ["error", "skip"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA, target=st.sampled_from([None, "b"]))
def test_a_file_of_any_bytes_gives_only_project_errors(policy, data, target) -> None:
    fd, path = tempfile.mkstemp(suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _drain(CsvFileSource(path, RowParser(path, target=target, on_bad_row=policy)), path)
    finally:
        os.unlink(path)


@pytest.mark.parametrize("policy", ["error", "skip"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA, target=st.sampled_from([None, "b"]))
def test_stdin_of_any_bytes_gives_only_project_errors(policy, data, target) -> None:
    parser = RowParser("<stdin>", target=target, on_bad_row=policy)
    _drain(StdinSource(parser, io.BytesIO(data)), "<stdin>")
