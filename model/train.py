"""Training the VAE: configuration and presets, the loop, checkpoints, logs, and several processes.

One process by default; under ``torchrun`` (WORLD_SIZE > 1) every process trains a replica in
DistributedDataParallel on its share of each epoch (a DistributedSampler; gloo on CPU, nccl on
GPU). ``batch_size`` is per process and BatchNorm statistics are per process. On CUDA with
``amp`` the network runs under bfloat16 autocast while the objective (and so the statistics)
stays in float32. After each epoch the BatchNorm statistics used in eval mode are recomputed from
NORM_BATCHES training batches (see :func:`recalibrate_batch_norm`), so validation and evaluation see
the current weights. Checkpoints are written at the end of epochs with the model, optimizer,
scheduler and RNG states (the data folder relative to the checkpoint's); a resumed run keeps the
checkpoint's settings (all but RESUMABLE) and continues bit-identically on the CPU. Ctrl-C stops a
run cleanly, keeping the last complete checkpoint.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .data import (
    FolderDataset,
    GaussianDataset,
    LineConfig,
    LineDataset,
    config_field,
    parse_label_map,
    progress_bar,
    split_indices,
)
from .objectives import STATISTICS_FORMS, VAEObjective, statistics_fields
from .vae import ENCODERS, ResNetVAE, model_input, one_hot

DATASETS = ("lines", "gaussian", "folder")
CHECKPOINT = "checkpoint.pt"
TERMS = ("loss", "statistics", "kl", "pixel")
PROGRESS_EVERY = 10
NORM_BATCHES = 10  # training batches that set the BatchNorm statistics after each epoch
PACE_BATCHES = 2  # batches timed (after the first) for the estimate of the run's duration
LONG_CPU_RUN = 3600.0  # seconds; a longer estimate on a CPU is printed as a warning


def float_tuple(text):
    return tuple(float(v) for v in str(text).split(","))


def optional_int(text):
    return None if str(text).lower() == "none" else int(text)


def optional_str(text):
    return None if str(text).lower() == "none" else str(text)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the defaults are the paper's (preset "paper")."""

    dataset: str = config_field("lines", "generated lines or gaussian microstructures, or a folder", choices=DATASETS)
    data_dir: str = config_field(None, "folder of .png/.tif/.npy phase maps (dataset folder)", optional_str)
    label_map: str = config_field(None, "pixel value to phase for a folder of images, e.g. 0=0,255=1", optional_str)
    image_size: int = config_field(224, "image side in pixels (generated data)")
    n_images: int = config_field(100_000, "number of generated images (a folder uses all its files)")
    split: tuple = config_field((0.7, 0.3, 0.0), "train,validation,test fractions", float_tuple)
    data_seed: int = config_field(0, "seed of the generated images and of the split")
    lines: LineConfig = LineConfig()  # noqa: RUF009 - frozen, shared safely
    volume_fractions: tuple = config_field(
        (0.5,), "phase fractions of the gaussian data (the last phase takes the rest)", float_tuple
    )
    correlation_length: float = config_field(4.0, "correlation length of the gaussian data in pixels")
    encoder: str = config_field("resnet152", "encoder trunk", choices=ENCODERS)
    encoder_weights: str = config_field(
        None, "local torchvision state dict of the encoder trunk (nothing is downloaded)", optional_str
    )
    freeze_encoder: bool = config_field(True, "keep the encoder trunk's weights fixed (the paper does)")
    latent_dim: int = config_field(9, "latent size")
    statistics: str = config_field("authors-code", "two-point distance (model/objectives.py)", choices=STATISTICS_FORMS)
    alpha: float = config_field(1.0, "weight of the two-point distance")
    beta: float = config_field(1.0, "weight of the KL divergence")
    pixel_weight: float = config_field(0.0, "weight of the summed squared pixel error (the baseline's loss)")
    pixel_warmup: float = config_field(
        0.0, "fraction of the epochs over which an added pixel term fades from weight 1 to 0 (a warm start)"
    )
    periodic: bool = config_field(True, "periodic statistics (the authors' code) or, with --no-periodic, non-periodic")
    cutoff: int = config_field(None, "window half-width of the statistics (default: every displacement)", optional_int)
    epochs: int = config_field(1500, "number of epochs")
    batch_size: int = config_field(32, "images per batch and process")
    lr: float = config_field(1e-3, "Adam learning rate")
    lr_halve_at: float = config_field(0.9, "fraction of the epochs after which the learning rate halves")
    seed: int = config_field(125, "seed of the weights, the shuffling and the sampling")
    workers: int = config_field(4, "data loader worker processes")
    amp: bool = config_field(True, "bfloat16 autocast on CUDA (the statistics stay float32)")
    checkpoint_every: int = config_field(50, "also keep a copy of the checkpoint every this many epochs")

    def check(self):
        """Raise ValueError naming the first setting that cannot work."""
        choices = {"dataset": DATASETS, "encoder": ENCODERS, "statistics": STATISTICS_FORMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.dataset == "folder" and not self.data_dir:
            raise ValueError("dataset 'folder' needs --data-dir")
        positive = ("image_size", "n_images", "epochs", "latent_dim", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm needs two images), got {self.batch_size}")
        if not 0 <= self.pixel_warmup <= 1:
            raise ValueError(f"pixel_warmup must be a fraction of the epochs in [0, 1], got {self.pixel_warmup}")
        if not self.lr > 0 or not 0 < self.lr_halve_at <= 1 or self.workers < 0:
            raise ValueError(
                f"need lr > 0, 0 < lr_halve_at <= 1 and workers >= 0, got {self.lr}, {self.lr_halve_at}, {self.workers}"
            )

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        values["lines"] = LineConfig(**values.get("lines", {}))
        return cls(**values)


def _scaled_lines(size):
    """The default LineConfig scaled from 224 pixels to ``size`` (thickness at least 2 pixels)."""
    scale = size / 224
    return LineConfig(
        min_thickness=max(2, round(5 * scale)),
        max_thickness=max(3, round(9 * scale)),
        min_length=round(112 * scale),
        max_length=size,
        min_gap=max(2, round(10 * scale)),
    )


# The CPU demo (minutes per model on an idle 2-core machine). 64x64 images with the paper's line sizes
# scaled by 64/224; 4000 images: 3000 to train, 200 to validate, 800 held out. No pretrained weights
# can be fetched, so the resnet18 trunk starts random and is trained: frozen random features were
# measured ~25% faster per epoch but gave worse reconstructions to both models.
# Beta 1 and the statistics loss from the start, as in the paper: a KL weight scaled to the image
# size, (64/224)^2 = 0.08, with a pixel term fading over the first half of the epochs was measured
# worse on every metric of the report (docs/vae_line_counts.md). Adam at 3e-3 instead of the paper's
# 1e-3: within the demo's 280 steps it took the statistics-loss model from 61% to 92% of orientations
# kept and from 54% to 9% of reconstructions without a line (one run each, 800 test images).
_DEMO = dict(
    image_size=64,
    n_images=4000,
    split=(0.75, 0.05, 0.2),
    lines=_scaled_lines(64),
    encoder="resnet18",
    freeze_encoder=False,
    statistics="normalized",
    lr=3e-3,
    epochs=3,
    seed=0,
    workers=0,
    checkpoint_every=1000,
)
# The hour on an idle 2-core machine (both models and the report): the demo's recipe on 12000 images
# (9000 to train, 1200 to validate, 1800 held out) for 6 epochs, 6x the demo's training, at the
# paper's learning rate.
_HOUR = dict(_DEMO, n_images=12000, split=(0.75, 0.1, 0.15), epochs=6, lr=1e-3)
# The baselines: the same data, network and schedule with the pixel loss only.
_PIXEL = dict(alpha=0.0, pixel_weight=1.0, pixel_warmup=0.0)
PRESETS = {
    "paper": {},
    "paper-baseline": dict(_PIXEL, epochs=400),
    "demo-cpu": _DEMO,
    "demo-cpu-baseline": dict(_DEMO, **_PIXEL),
    "hour-cpu": _HOUR,
    "hour-cpu-baseline": dict(_HOUR, **_PIXEL),
}
PRESET_HELP = {
    "paper": "the paper's settings: resnet152 (frozen), 224x224, 100k images 70/30, authors-code statistics, Adam 1e-3 "
    "halved for the last 10%, batch 32, 1500 epochs, beta 1 (a GPU job)",
    "paper-baseline": "the paper's pixel-loss VAE: as paper with the summed squared pixel error, 400 epochs",
    "demo-cpu": "64x64 lines, 4000 images, trainable resnet18, normalized statistics, beta 1, lr 3e-3, "
    "3 epochs: under 10 minutes for both models on 2 idle CPU cores",
    "demo-cpu-baseline": "demo-cpu with the pixel loss instead of the statistics",
    "hour-cpu": "demo-cpu on 12000 images for 6 epochs at lr 1e-3: under an hour for both models on 2 idle CPU cores",
    "hour-cpu-baseline": "hour-cpu with the pixel loss instead of the statistics",
}


# Settings a resumed run may change: how long it trains and how it runs, not what it learns from or is.
RESUMABLE = ("epochs", "workers", "checkpoint_every", "amp", "data_dir")


def flat_settings(config):
    """{setting: value} of a TrainConfig with the line settings at the top level."""
    values = dataclasses.asdict(config)
    return values | values.pop("lines")


def changed_settings(before, after, ignore=()):
    """["name after (checkpoint: before)", ...] for every setting that differs between two TrainConfigs."""
    old, new = flat_settings(before), flat_settings(after)
    return [
        f"{name} {new[name]} (checkpoint: {old[name]})" for name in old if name not in ignore and old[name] != new[name]
    ]


def checkpoint_config(checkpoint, path, data_dir=None):
    """The TrainConfig of a checkpoint read from ``path``, its data folder resolved.

    A checkpoint stores its data folder relative to its own folder (see :func:`stored_config`), so a
    run folder moved together with its data still finds it; ``data_dir`` replaces it.
    """
    config = TrainConfig.from_dict(checkpoint["config"])
    if data_dir is None and config.data_dir is not None:
        data_dir = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), config.data_dir))
    return dataclasses.replace(config, data_dir=data_dir) if data_dir is not None else config


def stored_config(config, out):
    """The config as a checkpoint under ``out`` stores it: the data folder relative to ``out``."""
    values = dataclasses.asdict(config)
    if config.data_dir is not None:
        values["data_dir"] = os.path.abspath(config.data_dir)
        with contextlib.suppress(ValueError):  # on another drive the path stays absolute
            values["data_dir"] = os.path.relpath(values["data_dir"], os.path.abspath(out))
    return values


def preset_config(name, **overrides):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    config = dataclasses.replace(TrainConfig(), **(PRESETS[name] | overrides))
    config.check()
    return config


# ----------------------------------------------------------------------------------------------
# Data, model and objective of a config
# ----------------------------------------------------------------------------------------------


def build_dataset(config):
    """The whole dataset of ``config`` (items: uint8 labels (H, W)); it has ``n_phases``."""
    if config.dataset == "lines":
        return LineDataset(config.n_images, config.image_size, config.lines, config.data_seed)
    if config.dataset == "gaussian":
        return GaussianDataset(
            config.n_images, config.image_size, config.volume_fractions, config.correlation_length, config.data_seed
        )
    dataset = FolderDataset(config.data_dir, parse_label_map(config.label_map) if config.label_map else None)
    if dataset.size != config.image_size:
        raise ValueError(
            f"the images in {config.data_dir} are {dataset.size} pixels wide; pass --image-size {dataset.size}"
        )
    return dataset


def build_splits(config):
    """{"train", "validation", "test": Subset} of the dataset of ``config``, and its number of phases."""
    dataset = build_dataset(config)
    parts = split_indices(len(dataset), config.split, config.data_seed)
    return {name: torch.utils.data.Subset(dataset, part.tolist()) for name, part in parts.items()}, dataset.n_phases


def build_model(config, n_phases, encoder_weights=None):
    return ResNetVAE(
        encoder=config.encoder,
        latent_dim=config.latent_dim,
        image_size=config.image_size,
        n_phases=n_phases,
        freeze_encoder=config.freeze_encoder,
        encoder_weights=encoder_weights,
    )


def pixel_weight_at(config, epoch):
    """The pixel term's weight in epoch ``epoch`` (from 0): pixel_weight plus the fading warm-start term."""
    warmup_epochs = config.pixel_warmup * config.epochs
    return config.pixel_weight + (max(0.0, 1.0 - epoch / warmup_epochs) if warmup_epochs else 0.0)


def build_objective(config, statistics_range=1.0):
    return VAEObjective(
        form=config.statistics,
        alpha=config.alpha,
        beta=config.beta,
        pixel_weight=config.pixel_weight,
        periodic=config.periodic,
        cutoff=config.cutoff,
        statistics_range=statistics_range,
    )


@torch.no_grad()
def training_set_summary(objective, loader, n_phases, device, progress=False):
    """(range max - min of the hard statistics, mean phase fractions (C,)) of the training images.

    Reduced over all processes. ``progress``: a progress bar (on terminals).
    """
    low, high = torch.tensor(math.inf, device=device), torch.tensor(-math.inf, device=device)
    pixels = torch.zeros(n_phases, dtype=torch.float64, device=device)
    for labels in progress_bar(loader, "statistics of the training images", progress):
        target = one_hot(labels.to(device), n_phases)
        stats = objective.two_point.statistics(statistics_fields(target))
        low, high = torch.minimum(low, stats.min()), torch.maximum(high, stats.max())
        pixels += target.sum((0, 2, 3)).double()
    if dist.is_initialized():
        dist.all_reduce(low, dist.ReduceOp.MIN)
        dist.all_reduce(high, dist.ReduceOp.MAX)
        dist.all_reduce(pixels)
    return float(high - low), pixels / pixels.sum()


# ----------------------------------------------------------------------------------------------
# Processes and devices
# ----------------------------------------------------------------------------------------------


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but torch sees no CUDA GPU")
    return device


def _start_processes(device):
    """(rank, world size, device) after joining the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def _all_sum(values, device):
    """Sum a list of floats over all processes."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _loader(subset, config, rank, world, *, shuffle):
    sampler = torch.utils.data.DistributedSampler(
        subset, num_replicas=world, rank=rank, shuffle=shuffle, seed=config.seed
    )
    return torch.utils.data.DataLoader(
        subset,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=shuffle,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
    )


# ----------------------------------------------------------------------------------------------
# Checkpoints and logs
# ----------------------------------------------------------------------------------------------


def _rng_state(device):
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _save(path, payload):
    temporary = path + ".partial"
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path):
    """The dict a training run saved at ``path`` (raises ValueError when it is not one)."""
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for files that are not checkpoints
        raise ValueError(f"{path!r} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(checkpoint, dict) or "config" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{path!r} is not a checkpoint written by spatialstats train")
    return checkpoint


def load_trained(path, device="cpu", data_dir=None):
    """(config, model in eval mode, checkpoint) of a saved run; ``data_dir`` replaces its data folder."""
    checkpoint = load_checkpoint(path)
    config = checkpoint_config(checkpoint, path, data_dir)
    model = build_model(config, checkpoint["n_phases"])
    model.load_state_dict(checkpoint["model"])
    return config, model.to(device).eval(), checkpoint


def write_logs(out, history):
    """``log.json`` and ``log.csv`` under ``out``: one record per epoch."""
    with open(os.path.join(out, "log.json"), "w") as handle:
        json.dump(history, handle, indent=1)
    with open(os.path.join(out, "log.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def autocast_for(config, device):
    """bfloat16 autocast on CUDA when ``config.amp``; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda")


def training_step(model, vae, objective, labels, optimizer, autocast):
    """The loss terms of one batch of uint8 labels (N, H, W) and, with ``optimizer``, one update.

    ``model`` is ``vae`` or its DistributedDataParallel wrapper.
    """
    with torch.set_grad_enabled(optimizer is not None):
        with autocast:
            logits, mu, logvar = model(model_input(labels, vae.n_phases))
        terms = objective(vae.phase_probabilities(logits), one_hot(labels, vae.n_phases), mu, logvar)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
    return terms


def _run_epoch(model, vae, objective, loader, optimizer, device, config, description=None, on_pace=None):
    """Train (with ``optimizer``) or validate (without) over ``loader``: ({term: sum over images}, images).

    ``description``: show a progress bar (on terminals) with the loss terms and the throughput.
    ``on_pace``: called once with the seconds per batch measured over batches 2..PACE_BATCHES + 1.
    """
    sums, images = dict.fromkeys(TERMS, 0.0), 0
    autocast = autocast_for(config, device)
    batches = progress_bar(loader, description, bool(description))
    start = time.perf_counter()
    for step, labels in enumerate(batches):
        labels = labels.to(device, non_blocking=True)
        terms = training_step(model, vae, objective, labels, optimizer, autocast)
        images += len(labels)
        for name in TERMS:
            sums[name] += terms[name].detach().double() * len(labels)
        if on_pace is not None and step == 0:
            first_done = time.perf_counter()
        if on_pace is not None and step == PACE_BATCHES:
            on_pace((time.perf_counter() - first_done) / PACE_BATCHES)
        if description and step % PROGRESS_EVERY == 0:
            rate = images / (time.perf_counter() - start)
            batches.set_postfix(
                {name: f"{float(terms[name].detach()):.4g}" for name in TERMS} | {"img/s": f"{rate:.0f}"}
            )
    return {name: float(value) for name, value in sums.items()}, images


@torch.no_grad()
def recalibrate_batch_norm(vae, loader, device, batches=NORM_BATCHES):
    """Set every BatchNorm's running mean and variance to their average over ``batches`` training batches.

    Train-mode forward passes without gradients (z sampled as in training); the weights are untouched.
    The running averages at the paper's momentum 0.01 follow the weights ~100 steps late, so in eval mode
    a short run's encoder saw features far from those it was trained on (validation KL of 1e3 to 1e5
    after an epoch or two); the recomputed statistics are those of the current weights.
    """
    norms = [m for m in vae.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    vae.train()
    for step, labels in enumerate(loader):
        if step == batches:
            break
        vae(model_input(labels.to(device), vae.n_phases))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def _restore(checkpoint, vae, objective, optimizer, scheduler, device):
    """Load the states of a checkpoint into the run's objects: (history, epochs done)."""
    vae.load_state_dict(checkpoint["model"])
    objective.load_state_dict(checkpoint["objective"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if device.type == "cuda" and "cuda" in checkpoint["rng"]:
        torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)
    return checkpoint["history"], checkpoint["epoch"]


def _means(train_sums, train_images, validation_sums, validation_images, seconds, device):
    """The epoch's log entries: images, throughput and the mean loss terms over all processes."""
    totals = _all_sum([*train_sums.values(), train_images, *validation_sums.values(), validation_images], device)
    train_images, validation_images = totals[len(TERMS)], max(totals[-1], 1)
    record = {"train_images": int(train_images), "images_per_second": round(train_images / seconds, 1)}
    record |= {f"train_{name}": totals[i] / train_images for i, name in enumerate(TERMS)}
    return record | {
        f"validation_{name}": totals[len(TERMS) + 1 + i] / validation_images for i, name in enumerate(TERMS)
    }


class TrainingInterrupted(Exception):
    """Ctrl-C stopped a run: ``checkpoint`` is its last complete checkpoint (or None), ``epochs`` the number of
    epochs it holds (None when the stop came before training began)."""

    def __init__(self, checkpoint, epochs):
        super().__init__("stopped by Ctrl-C " + (f"after epoch {epochs}" if epochs else "before training began"))
        self.checkpoint, self.epochs = checkpoint, epochs


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def pace_note(seconds_per_batch, batches_per_epoch, epochs_left, device):
    """The printed estimate of the run's duration; a warning for a long run on a CPU."""
    epoch = seconds_per_batch * batches_per_epoch
    text = (
        f"one epoch ({batches_per_epoch} batches) takes about {_duration(epoch)} on {device.type} "
        f"(measured over {PACE_BATCHES} batches), so the {epochs_left} epochs to go take about "
        f"{_duration(epoch * epochs_left)}"
    )
    if device.type == "cpu" and epoch * epochs_left > LONG_CPU_RUN:
        return (
            f"warning: {text}: long for a CPU (the paper's presets are sized for a GPU; the demo-cpu presets "
            "take minutes on an idle 2-core machine, longer on a busy one)"
        )
    return f"note: {text}"


def encoder_note(config):
    """What the run's encoder trunk starts from, and a warning when it is frozen with random weights."""
    if config.encoder_weights is not None:
        return None
    if config.freeze_encoder:
        return (
            f"warning: the {config.encoder} trunk is frozen and starts from random weights, so its features stay "
            "random (the paper freezes ImageNet weights). Nothing is downloaded: save the weights on a machine "
            f'with internet access, torch.save(torchvision.models.{config.encoder}(weights="DEFAULT").state_dict(), '
            "FILE), and pass --encoder-weights FILE; or train the trunk with --no-freeze-encoder"
        )
    return (
        f"note: the {config.encoder} trunk starts from random weights and is trained "
        "(--encoder-weights FILE starts it from a torchvision state dict, as the paper's ImageNet start)"
    )


def _remove_partial_files(out):
    if os.path.isdir(out):
        for name in os.listdir(out):
            if name.endswith(".partial"):
                os.remove(os.path.join(out, name))


def train(config, out, *, resume=None, device="auto", progress=True):
    """Train a VAE as ``config`` says, writing ``checkpoint.pt``, ``log.json`` and ``log.csv`` under ``out``.

    ``resume``: a checkpoint to continue from (its epochs, weights, optimizer, scheduler and RNG
    states); ``config`` must equal its settings except for the RESUMABLE ones. Returns the path of the
    final checkpoint. Ctrl-C raises TrainingInterrupted after removing unfinished files, keeping
    the last complete checkpoint.
    """
    config.check()
    rank, world, device = _start_processes(resolve_device(device))
    try:
        return _train(config, out, resume, device, rank, world, progress)
    except KeyboardInterrupt:  # before the first epoch began
        raise TrainingInterrupted(resume, None) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(config, out, resume, device, rank, world, progress):
    torch.manual_seed(config.seed)
    splits, n_phases = build_splits(config)
    if len(splits["train"]) < config.batch_size * world:
        raise ValueError(
            f"the training split has {len(splits['train'])} images, fewer than one batch per process "
            f"({config.batch_size} x {world})"
        )
    checkpoint = load_checkpoint(resume) if resume else None
    if checkpoint is not None:
        changed = changed_settings(checkpoint_config(checkpoint, resume), config, ignore=RESUMABLE)
        if changed:
            raise ValueError(
                f"a resumed run keeps the settings of its checkpoint {resume}, and these differ: {'; '.join(changed)}. "
                f"Only {', '.join(RESUMABLE)} can change on --resume; start a new run to change the others"
            )
    if rank == 0 and not resume and encoder_note(config):
        print(encoder_note(config))
    vae = build_model(config, n_phases, None if resume else config.encoder_weights).to(device)
    objective = build_objective(config).to(device)
    optimizer = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=config.lr, fused=True)
    halve_from = int(config.lr_halve_at * config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 if epoch >= halve_from else 1.0)
    train_loader = _loader(splits["train"], config, rank, world, shuffle=True)
    validation_loader = _loader(splits["validation"], config, rank, world, shuffle=False)
    history, start_epoch = [], 0
    if checkpoint is not None:
        history, start_epoch = _restore(checkpoint, vae, objective, optimizer, scheduler, device)
    else:
        statistics_range, fractions = training_set_summary(
            objective, train_loader, n_phases, device, progress and rank == 0
        )
        objective.statistics_range.fill_(statistics_range)
        vae.start_at_fractions(fractions)
    model = DistributedDataParallel(vae) if world > 1 else vae
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        _remove_partial_files(out)
        print(
            f"training {config.encoder} VAE on {len(splits['train'])} {config.dataset} images "
            f"({config.image_size}x{config.image_size}, {n_phases} phases) on {device} x {world}, "
            f"epochs {start_epoch + 1}..{config.epochs}"
        )
    path = os.path.join(out, CHECKPOINT)
    saved, done = resume, start_epoch

    def announce_pace(seconds_per_batch):
        print(pace_note(seconds_per_batch, len(train_loader), config.epochs - start_epoch, device), flush=True)

    try:
        for epoch in range(start_epoch, config.epochs):
            train_loader.sampler.set_epoch(epoch)
            started = time.perf_counter()
            model.train()
            description = f"epoch {epoch + 1}/{config.epochs}" if progress and rank == 0 else None
            objective.pixel_weight = pixel_weight_at(config, epoch)
            on_pace = announce_pace if rank == 0 and epoch == start_epoch else None
            train_sums, train_images = _run_epoch(
                model, vae, objective, train_loader, optimizer, device, config, description, on_pace
            )
            seconds = time.perf_counter() - started
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            recalibrate_batch_norm(vae, train_loader, device)
            model.eval()
            validation_sums, validation_images = _run_epoch(
                model, vae, objective, validation_loader, None, device, config
            )
            record = {"epoch": epoch + 1, "lr": lr, "seconds": round(seconds, 3)}
            record |= _means(train_sums, train_images, validation_sums, validation_images, seconds, device)
            history.append(record)
            if rank == 0:
                print(
                    f"epoch {epoch + 1}/{config.epochs}: "
                    + ", ".join(
                        f"{name} {record['train_' + name]:.4g}/{record['validation_' + name]:.4g}" for name in TERMS
                    )
                    + f" (train/validation), {record['images_per_second']:.0f} img/s, {seconds:.1f} s",
                    flush=True,
                )
                payload = {
                    "config": stored_config(config, out),
                    "n_phases": n_phases,
                    "epoch": epoch + 1,
                    "model": vae.state_dict(),
                    "objective": objective.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(device),
                    "history": history,
                    "world_size": world,
                }
                _save(path, payload)
                saved = path
                if (epoch + 1) % config.checkpoint_every == 0:
                    _save(os.path.join(out, f"checkpoint_epoch{epoch + 1:04d}.pt"), payload)
                write_logs(out, history)
            if world > 1:
                dist.barrier()
            done = epoch + 1
    except KeyboardInterrupt:
        if rank == 0:
            _remove_partial_files(out)
        raise TrainingInterrupted(saved, done) from None
    return path
