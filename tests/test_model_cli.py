"""The VAE's commands reach the ``spatialstats`` script through entry points, and report why they cannot run."""

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

from spatialstats import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args, cwd, prelude=""):
    """(exit status, stdout, stderr) of ``python -c`` running the spatialstats command in a fresh process."""
    code = f"import sys\n{prelude}\nfrom spatialstats.cli import main\nsys.exit(main({args!r}))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_the_library_never_imports_the_model_package():
    for path in (ROOT / "spatialstats").rglob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+model\b", path.read_text(), re.MULTILINE), path


def test_the_vae_commands_are_entry_points():
    found = {e.name: e.value for e in importlib.metadata.entry_points(group=cli.COMMAND_GROUP)}
    assert found == {"train": "model.cli:add_train", "evaluate": "model.cli:add_evaluate", "data": "model.cli:add_data"}
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"stats", "train", "evaluate", "data"} <= set(commands)


def test_a_command_that_fails_to_import_names_the_missing_package(tmp_path, capsys):
    entry_point = importlib.metadata.EntryPoint("fancy", "package_that_is_not_there.cli:add", cli.COMMAND_GROUP)
    parser = cli.build_parser()
    cli.add_command(parser._subparsers._group_actions[0], entry_point)
    assert "unavailable" in parser.format_help()
    args, _ = parser.parse_known_args(["fancy", "--any", "options"])
    with pytest.raises(ImportError, match=r"'fancy' cannot run: .*'package_that_is_not_there', which is not installed"):
        args.handler(args)


def test_without_torchvision_train_says_what_to_install(tmp_path):
    status, _, errors = _run(["train", "--preset", "demo-cpu"], tmp_path, "sys.modules['torchvision'] = None")
    assert status == 2
    assert "'train' cannot run" in errors and "'torchvision'" in errors, errors
    assert "pip install 'spatialstats[model]'" in errors
    status, output, _ = _run(["--help"], tmp_path, "sys.modules['torchvision'] = None")
    assert status == 0 and "stats" in output and "train" in output


def test_a_model_py_in_the_working_folder_is_named(tmp_path):
    (tmp_path / "model.py").write_text("VALUE = 1\n")
    status, _, errors = _run(["evaluate", "x.pt"], tmp_path, f"sys.path.insert(0, {str(tmp_path)!r})")
    assert status == 2
    assert str(tmp_path / "model.py") in errors and "rename it" in errors, errors
