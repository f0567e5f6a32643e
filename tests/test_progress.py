"""Progress displays: a bar on a terminal, plain lines in redirected logs (no carriage returns)."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import pytest

from hyenamd.progress import LineProgress, progress_bar, progress_mode

ROOT = pathlib.Path(__file__).parents[1]
SRC = str(pathlib.Path(__import__("hyenamd").__file__).parents[1])


def test_lines_every_ten_percent_and_at_the_end(monkeypatch):
    monkeypatch.setenv("HYENAMD_PROGRESS", "lines")  # a StringIO is not a terminal: off by default
    out = io.StringIO()
    bar = progress_bar(total=1000, desc="md", unit="step", file=out)
    assert isinstance(bar, LineProgress)
    for _ in range(100):
        bar.update(10)
        bar.set_postfix(ns_per_day=1.25, refresh=False)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [ln.split(":")[1].split("%")[0].strip() for ln in lines] == [str(p) for p in range(10, 101, 10)]
    assert lines[-1].startswith("md: 100% (1000/1000 step)") and lines[-1].endswith("ns_per_day=1.25")


def test_iterable_initial_reset_and_disable(monkeypatch):
    monkeypatch.setenv("HYENAMD_PROGRESS", "lines")
    out = io.StringIO()
    assert list(progress_bar(range(4), desc="x", file=out, every_percent=50)) == [0, 1, 2, 3]
    assert len(out.getvalue().splitlines()) == 2  # 50 %, then the end
    out = io.StringIO()
    bar = LineProgress(total=10, initial=5, file=out, every_percent=25)
    bar.update(5)
    bar.close()
    assert out.getvalue().startswith("100% (10/10 it)")
    bar.reset(total=4)
    bar.update(4)
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("100% (4/4 it)")
    out = io.StringIO()
    with progress_bar(total=3, file=out, disable=True) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_mode_follows_the_stream_and_the_environment(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("HYENAMD_PROGRESS", raising=False)
    assert progress_mode(io.StringIO()) == "off" and progress_mode(Tty()) == "bar"
    monkeypatch.setenv("HYENAMD_PROGRESS", "off")
    out = io.StringIO()
    bar = progress_bar(total=2, file=out)
    bar.update(2)
    bar.close()
    assert out.getvalue() == ""
    monkeypatch.setenv("HYENAMD_PROGRESS", "lines")
    assert progress_mode(Tty()) == "lines"


def _run(args, log: pathlib.Path, cwd: pathlib.Path, progress: str | None = "lines") -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))
    env.pop("HYENAMD_PROGRESS", None)
    if progress is not None:
        env["HYENAMD_PROGRESS"] = progress
    env["OMP_NUM_THREADS"] = "1"
    with open(log, "w") as fh:  # stdout and stderr redirected, as in `hyenamd ... > log 2>&1`
        return subprocess.run(
            [sys.executable, "-m", "hyenamd.cli", *args], stdout=fh, stderr=subprocess.STDOUT, env=env,
            cwd=cwd, timeout=600,
        ).returncode  # fmt: skip


def _reference(tmp_path) -> pathlib.Path:
    log = tmp_path / "reference.log"
    rc = _run(
        ["reference", str(ROOT / "configs/reference/tiny.yaml"), "--set", "progress=true",
         "--set", "n_steps=200", "--set", "output=data/reference/tiny.h5md"],
        log, tmp_path,
    )  # fmt: skip
    text = log.read_text()
    assert rc == 0, text[-2000:]
    assert (tmp_path / "data" / "reference" / "tiny.h5md").exists()  # directories created
    assert "\r" not in text
    assert "reference argon: 50% (100/200 step)" in text and "100% (200/200 step)" in text
    return tmp_path / "data" / "reference" / "tiny.h5md"


def test_redirected_reference_log_has_plain_lines(tmp_path):
    _reference(tmp_path)


@pytest.mark.slow
def test_redirected_train_log_has_plain_lines(tmp_path):
    store = _reference(tmp_path)
    log = tmp_path / "train.log"
    sets = [f"data.stores=[{store}]", "output_dir=runs/ff", "torch_threads=1", "model.n_scalar=4",
            "model.n_vector=2", "model.n_rbf=3", "model.pattern=[local]", "training.epochs=2",
            "training.batch_size=2", "data.n_segments=2"]  # fmt: skip
    rc = _run(["train", str(ROOT / "configs/train/argon_force_field.yaml")] + [a for s in sets for a in ("--set", s)],
              log, tmp_path)  # fmt: skip
    text = log.read_text()
    assert rc == 0, text[-2000:]
    assert "\r" not in text and "train force_field: 100%" in text


def test_redirected_log_has_no_progress_by_default(tmp_path):
    """Not a terminal and no HYENAMD_PROGRESS: progress is off (the results are still printed)."""
    log = tmp_path / "reference.log"
    rc = _run(
        ["reference", str(ROOT / "configs/reference/tiny.yaml"), "--set", "progress=true",
         "--set", "n_steps=100", "--set", "output=tiny.h5md"],
        log, tmp_path, progress=None,
    )  # fmt: skip
    text = log.read_text()
    assert rc == 0, text[-2000:]
    assert "%" not in text and "\r" not in text
    assert (tmp_path / "tiny.h5md").exists()
