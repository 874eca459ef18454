"""Training: a step lowers the loss, resuming is bit-identical, two gloo processes, logs and reports."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from model.data import LineConfig
from model.objectives import STATISTICS_FORMS
from model.train import build_model, build_objective, build_splits, load_checkpoint, preset_config, train
from model.vae import model_input, one_hot
from spatialstats.cli import main

TINY_LINES = LineConfig(min_thickness=2, max_thickness=3, min_length=16, max_length=32, min_gap=2)
TINY = dict(
    image_size=32, n_images=40, split=(0.6, 0.2, 0.2), lines=TINY_LINES, batch_size=8, epochs=2, checkpoint_every=1
)
TINY_FLAGS = [
    "--image-size",
    "32",
    "--n-images",
    "40",
    "--split",
    "0.6,0.2,0.2",
    "--min-thickness",
    "2",
    "--max-thickness",
    "3",
    "--min-length",
    "16",
    "--max-length",
    "32",
    "--min-gap",
    "2",
    "--batch-size",
    "8",
    "--epochs",
    "2",
    "--checkpoint-every",
    "1",
]


def tiny_config(**overrides):
    return preset_config("demo-cpu", **(TINY | overrides))


@pytest.mark.parametrize(
    "settings", [{"statistics": form} for form in STATISTICS_FORMS] + [{"alpha": 0.0, "pixel_weight": 1.0}]
)
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(settings):
    config = tiny_config(**settings)
    splits, n_phases = build_splits(config)
    labels = torch.stack([splits["train"][i] for i in range(8)])
    torch.manual_seed(0)
    model = build_model(config, n_phases)
    objective = build_objective(config, statistics_range=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)  # small enough for a first Adam step to descend

    def loss():
        torch.manual_seed(1)  # the same sampling noise every time
        logits, mu, logvar = model(model_input(labels, n_phases))
        return objective(model.phase_probabilities(logits), one_hot(labels, n_phases), mu, logvar)["loss"]

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert float(loss().detach()) < float(before.detach())


def _state(path):
    checkpoint = load_checkpoint(path)
    return checkpoint["model"], checkpoint["optimizer"]["state"], checkpoint["history"]


def test_resume_continues_bit_identically(tmp_path):
    config = tiny_config()
    straight = train(config, str(tmp_path / "straight"), progress=False)
    os.makedirs(tmp_path / "resumed")
    halfway = str(tmp_path / "resumed" / "halfway.pt")
    shutil.copy(tmp_path / "straight" / "checkpoint_epoch0001.pt", halfway)
    resumed = train(config, str(tmp_path / "resumed"), resume=halfway, progress=False)
    (model_a, optimizer_a, history_a), (model_b, optimizer_b, history_b) = _state(straight), _state(resumed)
    assert all(torch.equal(model_a[name], model_b[name]) for name in model_a)
    assert all(torch.equal(optimizer_a[i]["exp_avg"], optimizer_b[i]["exp_avg"]) for i in optimizer_a)
    keys = [key for key in history_a[1] if key not in ("seconds", "images_per_second")]
    assert [history_a[1][k] for k in keys] == [history_b[1][k] for k in keys]
    log = json.loads((tmp_path / "straight" / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2] and log[0]["train_images"] == 24
    assert (tmp_path / "straight" / "log.csv").read_text().startswith("epoch,lr,")
    assert load_checkpoint(straight)["config"] == dataclasses.asdict(config)


def _spatialstats(capsys, *args):
    """(exit status, stderr) of the ``spatialstats`` command run in this process."""
    try:
        status = main(list(args))
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def test_two_gloo_processes_train_with_ddp(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "spatialstats.cli",
        "train",
        "--preset",
        "demo-cpu",
        *TINY_FLAGS,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert checkpoint["world_size"] == 2
    # 24 training images: 12 per process, one batch of 8 each
    assert checkpoint["history"][0]["train_images"] == 16
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values() if value.is_floating_point())


def test_train_and_evaluate_from_the_command_line(tmp_path, capsys):
    runs = {}
    for name, extra in (("stats", []), ("pixel", ["--alpha", "0", "--pixel-weight", "1"])):
        status, errors = _spatialstats(
            capsys,
            "train",
            "--preset",
            "demo-cpu",
            *TINY_FLAGS,
            "--epochs",
            "1",
            *extra,
            "--out",
            str(tmp_path / name),
            "--no-progress",
        )
        assert status == 0, errors
        runs[name] = str(tmp_path / name / "checkpoint.pt")
    status, errors = _spatialstats(
        capsys,
        "evaluate",
        runs["stats"],
        "--baseline",
        runs["pixel"],
        "--out",
        str(tmp_path / "report"),
        "--n-images",
        "8",
    )
    assert status == 0, errors
    report = (tmp_path / "report" / "report.md").read_text()
    for words in (
        "| orientation preserved |",
        "| two-point statistics MSE (the paper's, soft indicator), median / mean |",
        "1.74e-05 / 2.91e-05",
        "statistics-loss VAE (this run)",
        "pixel-loss VAE (this run)",
        "reconstructions.png",
    ):
        assert words in report
    for name in (
        "reconstructions",
        "mse_histograms",
        "training_curves",
        "latent_traversal_statistics",
        "latent_traversal_pixel",
    ):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, words",
    [
        (["train"], ["--preset", "--resume"]),
        (["train", "--preset", "nope"], ["invalid choice", "nope"]),
        (["train", "--preset", "demo-cpu", "--encoder", "resnet19"], ["invalid choice", "resnet19"]),
        (["train", "--preset", "demo-cpu", "--epochs", "0"], ["epochs", ">= 1"]),
        (["train", "--preset", "demo-cpu", "--batch-size", "1"], ["batch_size", ">= 2"]),
        (["train", "--preset", "demo-cpu", "--split", "0.5,0.2"], ["split", "fractions"]),
        (["train", "--preset", "demo-cpu", "--min-lines", "5", "--max-lines", "2"], ["min_lines"]),
        (["train", "--preset", "demo-cpu", "--alpha", "0"], ["alpha", "pixel_weight"]),
        (["train", "--preset", "demo-cpu", "--resume", "x.pt"], ["--resume", "--preset"]),
        (["train", "--resume", "missing.pt"], ["missing.pt", "does not exist"]),
        (["train", "--preset", "demo-cpu", "--dataset", "folder"], ["--data-dir"]),
        (["evaluate", "missing.pt"], ["missing.pt", "does not exist"]),
        (["evaluate", "README_missing.pt", "--n-images", "0"], ["--n-images"]),
        (["data", "lines", "--n", "0", "--out", "unused"], ["--n", ">= 1"]),
        (["data", "lines", "--n", "2", "--out", "unused", "--size", "64"], ["max_length", "64"]),
    ],
)
def test_bad_arguments_exit_with_a_message(args, words, capsys):
    status, errors = _spatialstats(capsys, *args)
    assert status == 2
    assert all(word in errors for word in words), errors


def test_evaluate_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(1)}, path)
    status, errors = _spatialstats(capsys, "evaluate", str(path))
    assert status == 2 and "not a checkpoint" in errors
