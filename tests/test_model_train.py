"""Training: a step lowers the loss, resuming is bit-identical, two gloo processes, logs and reports."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from tqdm import tqdm

import model.train as training
from model.data import LineConfig, LineDataset, write_line_images
from model.objectives import STATISTICS_FORMS
from model.train import (
    build_model,
    build_objective,
    build_splits,
    encoder_note,
    load_checkpoint,
    pace_note,
    pixel_weight_at,
    preset_config,
    recalibrate_batch_norm,
    train,
)
from model.vae import ResNetVAE, model_input, one_hot
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
    assert result.stdout.count("wrote ") == 1  # only the first process says it
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
    for words in ("## Verdict", "## Line counts", "## Overfitting check", "## Nearest training images", "KS statistic"):
        assert words in report
    for name in (
        "reconstructions",
        "mse_histograms",
        "training_curves",
        "latent_traversal_statistics",
        "latent_traversal_pixel",
        "nearest_training_images_statistics",
        "line_counts",
        "overfitting",
        "volume_fraction_difference",
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


def _train_tiny(capsys, out, *extra):
    return _spatialstats(
        capsys, "train", "--preset", "demo-cpu", *TINY_FLAGS, "--out", str(out), "--no-progress", *extra
    )


def test_resume_names_the_settings_that_differ(tmp_path, capsys):
    status, errors = _train_tiny(capsys, tmp_path, "--epochs", "1")
    assert status == 0, errors
    checkpoint = str(tmp_path / "checkpoint.pt")
    status, errors = _spatialstats(
        capsys, "train", "--resume", checkpoint, "--encoder", "resnet34", "--latent-dim", "4"
    )
    assert status == 2
    for words in ("keeps the settings of its checkpoint", "encoder resnet34 (checkpoint: resnet18)", "latent_dim 4"):
        assert words in errors, errors
    status, errors = _spatialstats(capsys, "train", "--resume", checkpoint, "--epochs", "2", "--no-progress")
    assert status == 0, errors
    assert load_checkpoint(checkpoint)["epoch"] == 2


def test_a_relative_data_folder_is_found_from_anywhere(tmp_path, capsys, monkeypatch):
    write_line_images(str(tmp_path / "project" / "data"), 40, 32, TINY_LINES, seed=1, progress=False)
    monkeypatch.chdir(tmp_path / "project")
    status, errors = _train_tiny(capsys, "run", "--epochs", "1", "--dataset", "folder", "--data-dir", "data/images")
    assert status == 0, errors
    checkpoint = str(tmp_path / "project" / "run" / "checkpoint.pt")
    assert load_checkpoint(checkpoint)["config"]["data_dir"] == os.path.join("..", "data", "images")
    os.makedirs(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path / "elsewhere")
    evaluate = ["evaluate", checkpoint, "--n-images", "4", "--out", "report"]
    assert _spatialstats(capsys, *evaluate)[0] == 0
    shutil.move(tmp_path / "project" / "data", tmp_path / "moved")
    status, errors = _spatialstats(capsys, *evaluate)
    assert status == 2 and os.path.join("project", "data", "images") in errors
    status, errors = _spatialstats(capsys, *evaluate, "--data-dir", str(tmp_path / "moved" / "images"))
    assert status == 0, errors


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    (tmp_path / "old.pt.partial").write_text("left by a crash")
    saves, real_save = [], training._save

    def save_then_stop(path, payload):  # Ctrl-C while writing epoch 2's checkpoint
        saves.append(path)
        if len(saves) == 3:
            torch.save(payload, path + ".partial")
            raise KeyboardInterrupt
        real_save(path, payload)

    monkeypatch.setattr(training, "_save", save_then_stop)
    status, errors = _train_tiny(capsys, tmp_path)
    checkpoint = str(tmp_path / "checkpoint.pt")
    assert status == 130
    assert "stopped by Ctrl-C after epoch 1" in errors and f"spatialstats train --resume {checkpoint}" in errors
    assert load_checkpoint(checkpoint)["epoch"] == 1
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]


def test_long_cpu_runs_and_frozen_random_encoders_are_announced(tmp_path, capsys):
    paper = preset_config("paper")
    note = encoder_note(paper)
    assert note.startswith("warning:") and "frozen" in note and "--encoder-weights" in note and "resnet152" in note
    assert encoder_note(preset_config("demo-cpu")).startswith("note:")
    warning = pace_note(30.0, 2187, 1500, torch.device("cpu"))
    assert warning.startswith("warning:") and "18.2 h" in warning and "1139 days" in warning
    assert pace_note(0.1, 90, 8, torch.device("cpu")).startswith("note:")
    assert pace_note(30.0, 2187, 1500, torch.device("cuda")).startswith("note:")
    train(tiny_config(epochs=1, freeze_encoder=True), str(tmp_path), progress=False)
    output = capsys.readouterr().out
    assert "warning: the resnet18 trunk is frozen and starts from random weights" in output
    assert "note: one epoch (3 batches) takes about" in output


def test_progress_bars_for_the_data_and_the_statistics_pass(tmp_path, capsys, monkeypatch):
    shown = []

    def recording_bar(iterable, description, enabled=True, total=None):
        shown.append((description, enabled))
        return tqdm(iterable, disable=True)

    monkeypatch.setattr(training, "progress_bar", recording_bar)
    monkeypatch.setattr("model.data.progress_bar", recording_bar)
    train(tiny_config(epochs=1), str(tmp_path / "run"), progress=True)
    status, errors = _spatialstats(capsys, "data", "lines", "--n", "3", "--out", str(tmp_path / "data"))
    assert status == 0, errors
    descriptions = {description for description, enabled in shown if enabled}
    assert {"statistics of the training images", "epoch 1/1", "writing line images"} <= descriptions


def test_batch_norm_statistics_are_recomputed_for_evaluation():
    torch.manual_seed(0)
    vae = ResNetVAE(encoder="resnet18", latent_dim=4, image_size=32)
    dataset = LineDataset(64, 32, TINY_LINES, seed=3)
    labels = torch.stack([dataset[i] for i in range(64)])
    images = model_input(labels, 2)
    norms = [m for m in vae.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:  # running averages far from the current weights' statistics
        norm.running_mean += 3.0
    with torch.no_grad():
        batch_mu = vae.train().encode(images)[0]
        stale_mu = vae.eval().encode(images)[0]
        recalibrate_batch_norm(vae, [labels], "cpu", batches=1)
        mu = vae.eval().encode(images)[0]
    scale = batch_mu.abs().max()
    assert (stale_mu - batch_mu).abs().max() > 0.5 * scale  # the stale statistics move mu by half its size
    assert (mu - batch_mu).abs().max() < 0.1 * scale
    assert [norm.momentum for norm in norms] == momenta and 0.01 in momenta


def test_the_pixel_warm_start_fades_out():
    config = tiny_config(epochs=10, pixel_warmup=0.5)
    assert [pixel_weight_at(config, e) for e in range(7)] == pytest.approx([1, 0.8, 0.6, 0.4, 0.2, 0, 0])
    assert pixel_weight_at(tiny_config(epochs=10, pixel_weight=2.0, pixel_warmup=0.0), 3) == 2.0
    with pytest.raises(ValueError, match="pixel_warmup"):
        tiny_config(pixel_warmup=1.5)
