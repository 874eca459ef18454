"""bench/gpu_check.sh, bench/sweep.py and bench/plot.py on the CPU: both steps end to end with
--device cpu --quick (the install recorded, not run), and the sweep's guarantees: rows on disk as
they are measured, a rerun that continues, a time budget, failed cases recorded, and a lost CUDA
context ending the run with status 3 so that a fresh process continues after the failed case."""

import csv
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep, plot = load("sweep"), load("plot")


def python_shim(folder, pip_status=0, hidden=()):
    """A python3 for the script: records `-m pip` calls (with the environment they see) instead of
    installing, hides the modules ``hidden``, and is the test's interpreter otherwise."""
    site = folder / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in hidden))
    shim = folder / "python3"
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -m ] && [ "$2" = pip ]; then\n'
        '    echo "$* REQUIRE=$SPATIALSTATS_REQUIRE_EXTENSION SKIP_CUDA=$SPATIALSTATS_SKIP_CUDA_BUILD"'
        f" >> {folder}/pip.txt\n"
        f"    exit {pip_status}\n"
        "fi\n"
        f'PYTHONPATH={site}:$PYTHONPATH exec {sys.executable} "$@"\n'
    )
    shim.chmod(0o755)
    return str(shim)


def gpu_check(step, out, python, *options):
    env = dict(os.environ, PYTHON=python, PYTHONPATH=ROOT)
    env.pop("TRITON_INTERPRET", None)  # Triton's interpreter is too slow for an end-to-end run
    command = ["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), step, str(out), "--device", "cpu", "--quick"]
    return subprocess.run([*command, *options], env=env, capture_output=True, text=True, timeout=600)


def read_csv(folder):
    with open(os.path.join(folder, "sweep.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def test_test_step_end_to_end(tmp_path):
    result = gpu_check("test", tmp_path / "out", python_shim(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    (call,) = (tmp_path / "pip.txt").read_text().splitlines()
    assert "install --no-deps --no-build-isolation -e ." in call and "REQUIRE=1 SKIP_CUDA=1" in call
    suite = ElementTree.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) > int(suite.get("skipped")) and suite.get("failures") == suite.get("errors") == "0"
    assert "backends on cpu" in (tmp_path / "out" / "environment.txt").read_text()


def test_test_step_stops_on_a_missing_import(tmp_path):
    result = gpu_check("test", tmp_path / "out", python_shim(tmp_path, hidden=("ninja",)))
    assert result.returncode == 2
    assert "missing imports: ninja" in result.stdout + result.stderr
    assert not (tmp_path / "pip.txt").exists()


def test_test_step_stops_on_a_failed_install(tmp_path):
    result = gpu_check("test", tmp_path / "out", python_shim(tmp_path, pip_status=1))
    assert result.returncode == 3
    assert "install failed" in result.stdout
    assert not (tmp_path / "out" / "pytest.log").exists()


def test_sweep_step_end_to_end(tmp_path):
    out = tmp_path / "out"
    result = gpu_check("sweep", out, python_shim(tmp_path), "--budget-s", "500")  # all of it, even on a busy machine
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_csv(out)
    names = ["fft", "native", "conv", "auto"]
    measured = {(r["op"], r["spatial"], r["cutoff"], r["dtype"], r["backend"]) for r in rows if r["median_ms"]}
    expected = {
        (case.op, "x".join(map(str, case.spatial)), case.row()["cutoff"], case.dtype, name)
        for case in sweep.cases(quick=True)
        for name in names
    }
    assert measured == expected
    assert all(r["chosen"] in ("fft", "native", "conv") for r in rows if r["backend"] == "auto")
    assert (out / "sweep.png").stat().st_size > 0
    text = (out / "summary.md").read_text()
    assert "## Goal shapes" in text and "| loss 2 1 12x12 2 float32 |" in text and "## Fitted cost model" in text


@pytest.fixture
def two_cases(monkeypatch):
    """The sweep in this process: the first two quick cases, the backends of the CPU without Triton."""
    cases = sweep.cases(quick=True)[:2]
    monkeypatch.setattr(sweep, "cases", lambda quick: cases)
    monkeypatch.setattr(sweep, "backend_names", lambda device: ["fft", "native", "conv", "auto"])
    return cases


def test_sweep_budget_and_resume(tmp_path, two_cases):
    out = str(tmp_path)
    assert sweep.run(out, "cpu", True, 0.0, False) == 0
    assert read_csv(out) == []
    assert sweep.run(out, "cpu", True, 100.0, False) == 0
    rows = read_csv(out)
    assert len(rows) == 2 * 4 and all(r["median_ms"] for r in rows)
    assert sweep.run(out, "cpu", True, 100.0, False) == 0
    assert read_csv(out) == rows


def failing_backend(patch, name, message):
    """Make every measurement of backend ``name`` raise RuntimeError(message)."""
    measure = sweep.run_case

    def run_case(case, backend, *args):
        if backend == name:
            raise RuntimeError(message)
        return measure(case, backend, *args)

    patch.setattr(sweep, "run_case", run_case)


def test_sweep_records_a_failed_case_and_goes_on(tmp_path, two_cases, monkeypatch):
    failing_backend(monkeypatch, "conv", "out of memory\nsecond line")
    assert sweep.run(str(tmp_path), "cpu", True, 100.0, False) == 0
    rows = read_csv(tmp_path)
    assert [r["note"] for r in rows if r["backend"] == "conv"] == ["RuntimeError: out of memory"] * 2
    assert all(r["median_ms"] for r in rows if r["backend"] != "conv")


def test_sweep_stops_when_the_context_is_lost_and_a_rerun_continues(tmp_path, two_cases, monkeypatch):
    with monkeypatch.context() as patch:
        failing_backend(patch, "conv", "CUDA error: an illegal memory access was encountered")
        patch.setattr(sweep, "context_usable", lambda device: False)
        assert sweep.run(str(tmp_path), "cpu", True, 100.0, False) == sweep.CONTEXT_LOST
    rows = read_csv(tmp_path)
    assert [r["backend"] for r in rows] == ["fft", "native", "conv"]
    assert rows[2]["note"].startswith("RuntimeError: CUDA error: an illegal memory access")
    assert sweep.run(str(tmp_path), "cpu", True, 100.0, False) == 0
    rows = read_csv(tmp_path)
    assert [r["backend"] for r in rows] == ["fft", "native", "conv", "auto"] + ["fft", "native", "conv", "auto"]
    assert rows[2]["note"].startswith("RuntimeError") and all(r["median_ms"] for i, r in enumerate(rows) if i != 2)


def test_sweep_moves_a_csv_with_other_columns_aside(tmp_path, two_cases):
    (tmp_path / "sweep.csv").write_text("op,backend,median_ms\nloss,fft,1.0\n")
    assert sweep.run(str(tmp_path), "cpu", True, 0.0, False) == 0
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("sweep.csv.")]
    assert aside.read_text() == "op,backend,median_ms\nloss,fft,1.0\n"
    assert read_csv(tmp_path) == []


def test_plot_summarises_a_partial_sweep(tmp_path, two_cases):
    plot.main([str(tmp_path)])  # before the sweep wrote anything
    assert "0 of 0 rows measured" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "sweep.png").exists()
    assert sweep.run(str(tmp_path), "cpu", True, 100.0, False) == 0
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    (tmp_path / "sweep.csv").write_text("\n".join(lines[:3]) + "\n")  # as a sweep stopped after two rows
    plot.main([str(tmp_path)])
    text = (tmp_path / "summary.md").read_text()
    assert "2 of 2 rows measured" in text and "| stats 2 1 12x12 2 float32 | " in text
    assert (tmp_path / "sweep.png").stat().st_size > 0
