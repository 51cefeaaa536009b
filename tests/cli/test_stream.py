"""``twinpass stream``: run by subprocess on the default source, a file, stdin, a serial pty
and a terminal; the bad-input matrix; resume equal to an uninterrupted run; SIGTERM; the
metrics file; option errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from twinpass.cli.main import cli
from twinpass.runtime.metrics import read_metrics
from twinpass.runtime.streaming import StreamForecaster
from twinpass.runtime.tasks import MackeyGlassStream

REQUIRED = {"steps", "mse", "ema_mse", "persistence_mse", "initial_model_mse", "skipped_rows"}
VOLATILE = {"wall_s", "steps_per_s", "steps_this_run", "resumed_from_step", "checkpoint"}


def _twinpass() -> list[str]:
    exe = shutil.which("twinpass", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-c", "from twinpass.cli.main import main; main()"]


def _stream(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["stream", *args], input=input)


def _ok(*args: str, input: str | None = None) -> Result:
    result = _stream(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _sensor_csv(path: Path, rows: int = 3000) -> Path:
    """A date column, a Mackey-Glass temperature and a noisy humidity."""
    y = 20.0 + 5.0 * MackeyGlassStream(seed=1).next(rows)
    g = np.random.default_rng(0)
    lines = ["date,temp,hum"] + [
        f"2024-01-01T{i:05d},{float(v)!r},{50 + float(g.normal()):.4f}" for i, v in enumerate(y)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- by subprocess ------------------------------------------------------------------------


def test_default_run_learns_mackey_glass_live(tmp_path) -> None:
    """The README's command: no options, a summary, the model far ahead of the initial one."""
    proc = subprocess.run(
        [*_twinpass(), "stream", "--json-out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "step " in out and "EMA MSE" in out  # a progress line (plain mode: not a tty)
    assert "model (ANP, N=100)" in out and "persistence" in out and "initial model" in out
    r = _json(tmp_path / "r.json")
    assert REQUIRED <= set(r) and "wall_s" in r
    assert r["steps"] == 20_000 and r["stopped_by"] == "max-steps"
    assert r["ema_mse"] < r["initial_model_ema_mse"] / 100
    assert r["mse"] < r["persistence_mse"]


def test_file_and_stdin_give_the_same_results(tmp_path) -> None:
    data = _sensor_csv(tmp_path / "s.csv")
    args = ["--target", "temp", "--hidden", "30", "--metrics-every", "500"]
    file_run = subprocess.run(
        [*_twinpass(), "stream", "--source", f"csv:{data}", *args, "--json-out", "f.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert file_run.returncode == 0, file_run.stderr
    assert "left out (not numeric): date" in file_run.stdout
    with open(data, "rb") as stdin:
        pipe_run = subprocess.run(
            [*_twinpass(), "stream", "--source", "-", *args, "--json-out", "p.json"],
            stdin=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
    assert pipe_run.returncode == 0, pipe_run.stderr
    f, p = _json(tmp_path / "f.json"), _json(tmp_path / "p.json")
    assert f["steps"] == 2999 and f["columns"] == ["hum"] and f["target"] == "temp"
    assert f["non_numeric_columns"] == ["date"] and p["source"] == "<stdin>"
    for k in REQUIRED | {"ema_mse", "initial_model_ema_mse", "persistence_ema_mse"}:
        assert f[k] == p[k], k
    assert f["ema_mse"] < f["initial_model_ema_mse"] / 5


def test_sigterm_saves_a_loadable_checkpoint_and_exits_cleanly(tmp_path) -> None:
    ckpt = tmp_path / "run.ckpt"
    proc = subprocess.Popen(
        [
            *_twinpass(),
            "stream",
            "--max-steps",
            "100000000",
            "--checkpoint",
            str(ckpt),
            "--checkpoint-every",
            "2000",
            "--chunk-size",
            "1000",
            "--json-out",
            str(tmp_path / "r.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out and "continue with --resume" in out
    r = _json(tmp_path / "r.json")
    forecaster, meta = StreamForecaster.load(ckpt)
    assert forecaster.steps == r["steps"] == r["checkpoint_step"] >= 2000
    assert meta["source"]["kind"] == "mackey-glass"
    # and it continues from there
    more = _ok("--checkpoint", str(ckpt), "--resume", "--max-steps", str(r["steps"] + 500))
    assert f"resumed from {ckpt} at step {r['steps']:,}" in more.output
    assert StreamForecaster.load(ckpt)[0].steps == r["steps"] + 500


_WRITER = r"""
import array, fcntl, math, os, sys, termios
master, slave_name, header = int(sys.argv[1]), sys.argv[2], sys.argv[3]
slave = os.open(slave_name, os.O_RDONLY | os.O_NOCTTY)
sys.stdin.readline()  # go: the port is open (opening it flushes its input)
if header:
    os.write(master, header.encode() + b"\n")
for i in range(400):
    os.write(master, f"{math.sin(i / 9):.5f},{math.cos(i / 7):.5f}\n".encode())
# Closing the master drops what the reader has not read yet: wait until it has.
queued = array.array("i", [0])
while True:
    fcntl.ioctl(slave, termios.FIONREAD, queued)
    if queued[0] == 0:
        break
os.close(slave)
"""


@pytest.mark.parametrize(
    ("header", "target", "steps"), [("temp,hum", "temp", 399), ("", "c0", 398)]
)
def test_serial_source_through_a_pty(tmp_path, header: str, target: str, steps: int) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    os.close(slave)
    opts = ["--json-out", str(tmp_path / "r.json"), "--hidden", "20"]
    proc = subprocess.Popen(
        [*_twinpass(), "stream", "--source", f"serial:{name}", "--target", target, *opts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(master), name, header],
        pass_fds=[master],
        stdin=subprocess.PIPE,
        text=True,
    )
    os.close(master)
    try:
        assert proc.stdout is not None and writer.stdin is not None
        assert proc.stdout.readline().startswith(f"reading serial:{name}")
        writer.stdin.write("go\n")
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
        out, err = proc.communicate(timeout=60)
    finally:
        writer.kill()
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by serial port closed" in out
    r = _json(tmp_path / "r.json")
    # Without a header the first line is dropped (it may be the tail of an earlier line).
    assert r["steps"] == steps and r["skipped_rows"] == 0
    assert r["target"] == target and r["columns"] == (["hum"] if header else ["c1"])


def test_live_view_on_a_terminal(tmp_path) -> None:
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*_twinpass(), "stream", "--max-steps", "3000", "--source", "mackey-glass"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = out.decode("utf-8", "replace")
    assert "learning" in text and "3000/3000" in text  # rich's progress bar
    assert "┏" in text and "persistence (y at row t)" in text  # rich's table, markup intact


# -- in process ---------------------------------------------------------------------------


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path) -> None:
    data = _sensor_csv(tmp_path / "s.csv")
    common = ["--source", f"csv:{data}", "--target", "temp", "--hidden", "40"]
    common += ["--checkpoint-every", "1000", "--metrics-every", "50", "-q"]

    def run(name: str, *extra: str) -> None:
        _ok(*common, "--checkpoint", str(tmp_path / f"{name}.ckpt"),
            "--metrics-out", str(tmp_path / f"{name}.csv"),
            "--json-out", str(tmp_path / f"{name}.json"), *extra)  # fmt: skip

    run("full")
    # Stopped at 1500 with the last periodic checkpoint at 1000 ...
    run("cut", "--max-steps", "1000")
    shutil.copy(tmp_path / "cut.ckpt", tmp_path / "at1000.ckpt")
    run("cut", "--resume", "--max-steps", "1500")
    assert len(read_metrics(tmp_path / "cut.csv")["step"]) == 30
    # ... resumed from its final checkpoint at 1500, in other chunks:
    shutil.copy(tmp_path / "cut.csv", tmp_path / "crash.csv")
    run("cut", "--resume", "--chunk-size", "313")
    # ... or after a crash at 1500, from the checkpoint at 1000 (the metrics file holds
    # rows up to 1500, which must not be duplicated).
    shutil.copy(tmp_path / "at1000.ckpt", tmp_path / "crash.ckpt")
    run("crash", "--resume", "--chunk-size", "777")

    full, full_json = (
        StreamForecaster.load(tmp_path / "full.ckpt")[0],
        _json(tmp_path / "full.json"),
    )
    for name in ("cut", "crash"):
        again = StreamForecaster.load(tmp_path / f"{name}.ckpt")[0]
        assert again.steps == full.steps == 2999
        for a, b in zip(full.learner.params.astuple(), again.learner.params.astuple(), strict=True):
            assert a.tobytes() == b.tobytes()
        assert (tmp_path / f"{name}.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
        j = _json(tmp_path / f"{name}.json")
        assert {k: v for k, v in j.items() if k not in VOLATILE} == {
            k: v for k, v in full_json.items() if k not in VOLATILE
        }
    assert _json(tmp_path / "crash.json")["resumed_from_step"] == 1000


def test_metrics_file_rows(tmp_path) -> None:
    out = ["--metrics-out", str(tmp_path / "m.jsonl"), "--json-out", str(tmp_path / "r.json")]
    _ok("--max-steps", "1000", "--hidden", "20", "--metrics-every", "250", "-q", *out)
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [250, 500, 750, 1000]
    assert set(lines[0]) == {
        "step", "model_mse", "model_ema", "persistence_mse", "persistence_ema",
        "initial_mse", "initial_ema",
    }  # fmt: skip
    r = _json(tmp_path / "r.json")
    last = lines[-1]
    assert (last["model_mse"], last["model_ema"]) == (r["mse"], r["ema_mse"])
    assert (last["persistence_mse"], last["initial_ema"]) == (
        r["persistence_mse"],
        r["initial_model_ema_mse"],
    )
    assert lines[0]["model_ema"] > last["model_ema"]  # it learned


def _bad(tmp_path: Path, text: str, *args: str) -> Result:
    (tmp_path / "d.csv").write_text(text)
    return _stream("--source", f"csv:{tmp_path / 'd.csv'}", "--hidden", "5", *args)


T = ["--target", "t"]
NOT_FINITE = "is not a finite number"
FIELDS = "expected 2 fields as in the header, found"
BAD_INPUT = [
    ("t,x\n1,2\n2,abc\n3,4\n", T, "{f}:3: column 'x': not a number: 'abc'"),
    ("t,x\n1,2\n2,nan\n3,4\n", T, f"{{f}}:3: column 'x': 'nan' {NOT_FINITE}"),
    ("t,x\n1,2\ninf,2\n3,4\n", T, f"{{f}}:3: column 't': 'inf' {NOT_FINITE}"),
    ("t,x\n1,2\n2,3,4\n3,4\n", T, f"{{f}}:3: {FIELDS} 3"),
    ("t,x\n1,2\n2\n3,4\n", T, f"{{f}}:3: {FIELDS} 1"),
    ("t,x\n1,2\n", ["--target", "y"], "{f}: no column 'y' (for --target); available: t, x"),
    ("t,x\n1,2\n", [*T, "--columns", "z"], "{f}: no column 'z' (for --columns); available: t, x"),
    ("t,x\n1,2\n", [], "{f}: choose the column to predict with --target; numeric columns: t, x"),
    ("", T, "{f}: empty input (no header row)"),
    ("t,x\n", T, "{f}: no data rows after the header"),
    (
        "d,t\nmon,1\n",
        [*T, "--columns", "d"],
        "{f}:2: column 'd' is not numeric (first data row: 'mon'); "
        "twinpass learns from numeric columns only",
    ),
]


@pytest.mark.parametrize(("text", "args", "message"), BAD_INPUT)
def test_bad_input_is_one_error_line(tmp_path, text: str, args: list[str], message: str) -> None:
    result = _bad(tmp_path, text, *args, "-q")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message.format(f=tmp_path / 'd.csv')}\n"
    assert "Traceback" not in result.output


def test_bad_rows_skipped_and_reported(tmp_path) -> None:
    text = "t,x\n" + "".join(
        f"{i},{'oops' if i in (5, 9) else ('' if i == 20 else i)}\n" for i in range(40)
    )
    result = _bad(tmp_path, text, "--target", "t", "--on-bad-row", "skip", "--json-out",
                  str(tmp_path / "r.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped rows at lines 7, 11 (line 7: column 'x': not a number: 'oops')" in (
        result.output
    )
    r = _json(tmp_path / "r.json")
    # The empty field on line 22 is a missing cell, not a bad row: carried.
    assert r["skipped_rows"] == 2 and r["steps"] == 37 and r["carried_cells"] == 1
    assert [s["line"] for s in r["skipped_first"]] == [7, 11]


def test_a_bad_row_is_checkpointed_up_to_and_resumed_after_a_fix(tmp_path) -> None:
    rows = [f"{float(v)!r},{i}" for i, v in enumerate(MackeyGlassStream().next(600))]
    good = "y,i\n" + "\n".join(rows) + "\n"
    data = tmp_path / "d.csv"
    data.write_text(good.replace(rows[300], rows[300].split(",")[0] + ",x"))
    args = ["--source", f"csv:{data}", "--target", "y", "--hidden", "10", "-q"]
    bad = _stream(*args, "--checkpoint", str(tmp_path / "c.ckpt"))
    assert bad.exit_code == 1
    assert f"{data}:302: column 'i': not a number: 'x'; learned up to it" in bad.stderr
    assert StreamForecaster.load(tmp_path / "c.ckpt")[0].steps == 299
    data.write_text(good)
    _ok(*args, "--checkpoint", str(tmp_path / "c.ckpt"), "--resume")
    _ok(*args, "--checkpoint", str(tmp_path / "ref.ckpt"))
    a = StreamForecaster.load(tmp_path / "c.ckpt")[0].learner.params
    b = StreamForecaster.load(tmp_path / "ref.ckpt")[0].learner.params
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.astuple(), b.astuple(), strict=True))


def test_stdin_in_process(tmp_path) -> None:
    text = "v\n" + "\n".join(map(str, range(50))) + "\n"
    out = ["--json-out", str(tmp_path / "r.json")]
    result = _ok("--source", "-", "--target", "v", "--hidden", "5", *out, input=text)
    assert _json(tmp_path / "r.json")["steps"] == 49
    assert "<stdin>" in result.output


def test_an_unknown_device_is_a_one_line_error() -> None:
    result = _stream("--device", "quantum")
    assert result.exit_code == 1
    assert (
        result.output.strip().splitlines()
        == ["Error: unknown device 'quantum': available backends are analog, host"]
        or "unknown device 'quantum'" in result.output.splitlines()[-1]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume"], "--resume needs --checkpoint"),
        (["--source", "data.csv"], "unknown source 'data.csv'"),
        (["--target", "x"], "--columns and --target are for csv"),
        (["--metrics-out", "m.txt"], "must end in .csv or .jsonl"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = _stream(*args)
    assert result.exit_code == 2 and message in result.output


def test_checkpoint_is_never_overwritten_by_a_new_run(tmp_path) -> None:
    ckpt = tmp_path / "c.ckpt"
    _ok("--max-steps", "100", "--hidden", "5", "--checkpoint", str(ckpt), "-q")
    before = ckpt.read_bytes()
    result = _stream("--max-steps", "200", "--checkpoint", str(ckpt))
    assert result.exit_code == 2 and "add --resume to continue it" in result.output
    clash = _stream("--checkpoint", str(ckpt), "--resume", "--hidden", "7", "--horizon", "2")
    assert clash.exit_code == 2
    assert "made with --horizon 1; --hidden 5" in clash.output
    assert ckpt.read_bytes() == before


def test_divergence_is_an_error(tmp_path) -> None:
    # The paper's readout, uncapped, at a learning rate far too large.
    result = _stream(
        "--readout", "anp", "--no-output-cap", "--lr", "100", "--max-steps", "3000", "-q"
    )
    assert result.exit_code == 1 and "ANP diverged at step" in result.stderr


# -- causal forecasts and the stream options (by subprocess, on real CSV files) ------------


def _run_cli(tmp_path: Path, *args: str, json_name: str = "r.json") -> tuple[dict, str]:
    proc = subprocess.run(
        [*_twinpass(), "stream", *args, "--json-out", str(tmp_path / json_name)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return _json(tmp_path / json_name), proc.stdout


def _narma10_csv(path: Path, rows: int = 4000) -> Path:
    g = np.random.default_rng(3)
    u = g.uniform(0.0, 0.5, rows)
    y = np.zeros(rows)
    for t in range(9, rows - 1):
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * y[t - 9 : t + 1].sum() + 1.5 * u[t - 9] * u[t] + 0.1
    path.write_text(
        "u,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(u, y, strict=True))
    )
    return path


RLS_FAST = ["--readout", "rls", "--leak", "0.3", "--readout-inputs", "--forgetting", "0.98"]


def test_no_target_input_learns_narma10_from_u_alone(tmp_path) -> None:
    data = _narma10_csv(tmp_path / "narma.csv")
    r, out = _run_cli(
        tmp_path, "--source", f"csv:{data}", "--target", "y", "--no-target-input", "--hidden", "50"
    )
    assert "inputs: u (not the target)" in out
    assert r["inputs"] == ["u"] and r["config"]["target_input"] is False
    assert r["steps"] == r["scored"] == 3999 and r["persistence_mse"] is not None
    assert r["mse"] < r["initial_model_mse"]
    # The target is the only column: nothing would be left to learn from.
    only = tmp_path / "one.csv"
    only.write_text("y\n" + "".join(f"{i}\n" for i in range(20)))
    proc = subprocess.run(
        [*_twinpass(), "stream", "--source", f"csv:{only}", "--no-target-input", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "--no-target-input needs at least one input column besides the target" in proc.stderr


def test_delta_target_makes_persistence_the_zero_forecast(tmp_path) -> None:
    """An RLS readout starts at zero: the frozen initial network forecasts no change, so in
    delta mode it scores exactly as persistence; the model learns the change."""
    data = _sensor_csv(tmp_path / "s.csv")
    common = ["--source", f"csv:{data}", "--target", "temp", "--hidden", "40", *RLS_FAST]
    r, out = _run_cli(tmp_path, *common, "--horizon", "6", "--target-mode", "delta")
    assert "learning its change (delta)" in out
    assert r["target_mode"] == "delta" and r["label_delay"] == 6
    assert r["initial_model_mse"] == r["persistence_mse"]
    assert r["ema_mse"] < r["persistence_ema_mse"] / 2
    level, _ = _run_cli(tmp_path, *common, "--horizon", "6", json_name="level.json")
    assert level["target_mode"] == "level" and level["initial_model_mse"] != level["mse"]


def _holey_csv(path: Path, rows: int = 2000) -> Path:
    """Sensor rows with empty cells: inputs, targets, a whole row, the very first cells."""
    y = 20.0 + 5.0 * MackeyGlassStream(seed=2).next(rows)
    g = np.random.default_rng(1)
    lines = ["date,temp,hum"]
    for i, v in enumerate(y):
        temp = "" if i in (300, 301, 900) or i == 1500 else repr(float(v))
        hum = "" if i in (0, 1, 400, 1200) or i == 1500 else f"{50 + float(g.normal()):.4f}"
        lines.append(f"d{i},{temp},{hum}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_missing_cells_are_carried_and_counted(tmp_path) -> None:
    data = _holey_csv(tmp_path / "h.csv")
    args = ["--target", "temp", "--hidden", "30", "--horizon", "3"]
    r, out = _run_cli(tmp_path, "--source", f"csv:{data}", *args)
    # Inputs hum (5 empty) and temp itself (4 empty); targets: 4 rows.
    assert r["carried_cells"] == 9 and r["unlabelled_rows"] == 4 and r["skipped_rows"] == 0
    assert r["rows"] == 2000 and r["steps"] == 1997 and r["scored"] == 1993
    assert "4 rows with the target missing (not learned), 9 input cells carried" in out
    assert "1,993 forecasts of 'temp' 3 rows ahead" in out
    assert np.isfinite([r["mse"], r["persistence_mse"], r["initial_model_mse"]]).all()
    # stdin reads the same cells: the same results.
    with open(data, "rb") as stdin:
        proc = subprocess.run(
            [*_twinpass(), "stream", "--source", "-", *args, "--json-out", "p.json"],
            stdin=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    p = _json(tmp_path / "p.json")
    for k in ("mse", "ema_mse", "persistence_mse", "carried_cells", "unlabelled_rows", "scored"):
        assert p[k] == r[k], k
    # Without the target as an input its empty cells are not carried inputs.
    off, _ = _run_cli(
        tmp_path, "--source", f"csv:{data}", *args, "--no-target-input", json_name="o.json"
    )
    assert off["carried_cells"] == 5 and off["unlabelled_rows"] == 4


def test_no_forecast_beats_persistence_on_a_random_walk(tmp_path) -> None:
    """A leak detector. On a random walk nothing known at row t predicts y[t+h] better than
    y[t]. A forecast of y[t] made at row t from weights that learned y[t-h+1..t-1] (the
    leak of the former framing) scored about half of persistence's MSE with this fast RLS
    readout; a causal one cannot beat it."""
    g = np.random.default_rng(0)
    n = 6000
    walk = np.cumsum(g.normal(size=n))
    noise = g.normal(size=n)
    data = tmp_path / "walk.csv"
    data.write_text(
        "x,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(noise, walk, strict=True))
    )
    r, out = _run_cli(
        tmp_path, "--source", f"csv:{data}", "--target", "y", "--horizon", "10",
        "--hidden", "50", *RLS_FAST,
    )  # fmt: skip
    assert r["causal"] is True and r["label_delay"] == 10 and r["scored"] == n - 10
    assert "each made at row t from rows up to t and scored at row t+10" in out
    assert r["mse"] > 0.8 * r["persistence_mse"]


def test_resume_with_a_long_horizon_is_bit_identical(tmp_path) -> None:
    data = _holey_csv(tmp_path / "h.csv")
    common = ["--source", f"csv:{data}", "--target", "temp", "--hidden", "30", "--horizon", "5"]
    common += ["--target-mode", "delta", "--checkpoint-every", "600", "--metrics-every", "50"]

    def run(name: str, *extra: str) -> None:
        proc = subprocess.run(
            [*_twinpass(), "stream", *common, "-q", "--checkpoint", f"{name}.ckpt",
             "--metrics-out", f"{name}.csv", "--json-out", f"{name}.json", *extra],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    run("full")
    run("cut", "--max-steps", "1000")  # stops with 5 forecasts pending
    run("cut", "--resume", "--chunk-size", "97")
    full = StreamForecaster.load(tmp_path / "full.ckpt")[0]
    cut = StreamForecaster.load(tmp_path / "cut.ckpt")[0]
    assert cut.steps == full.steps == 1995 and cut.state() == full.state()
    for a, b in zip(full.learner.params.astuple(), cut.learner.params.astuple(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert (tmp_path / "cut.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    j, f = _json(tmp_path / "cut.json"), _json(tmp_path / "full.json")
    assert {k: v for k, v in j.items() if k not in VOLATILE} == {
        k: v for k, v in f.items() if k not in VOLATILE
    }
    assert j["unlabelled_rows"] == 4 and j["carried_cells"] == 9
    # Given again on --resume, another target mode is refused.
    proc = subprocess.run(
        [*_twinpass(), "stream", *common, "--target-mode", "level", "--checkpoint", "cut.ckpt",
         "--resume"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "made with --target-mode delta" in proc.stderr


def test_a_learner_that_cannot_skip_a_label_stops_at_a_missing_target(tmp_path) -> None:
    text = "t,x\n" + "".join(f"{'' if i == 30 else i},{i % 7}\n" for i in range(60))
    result = _bad(tmp_path, text, "--target", "t", "--rule", "bp", "-q")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'd.csv'}: data row 30 of the stream (counted from 0): the target "
        "cell is missing, and the host device with the bp rule cannot leave a step unlearned; "
        "fill the cell, or learn on the host with the anp, np or wp rule\n"
    )
