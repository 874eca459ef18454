"""pytest-benchmark: one training step of the VAE, and the share of it spent in the two-point loss.

    python -m pytest bench/test_bench_train.py --benchmark-only -s

The share is the time of the statistics term alone (forward and backward of the distance between
the statistics of a (N, C, H, W) probability stack and of the targets, as in the step) over the
median time of the whole step (forward, objective, backward, Adam update). It is printed and
stored in the benchmark's extra_info. Target: under 5% on a GPU with the fused backends.
"""

import time

import pytest
import torch

from model.data import LineConfig
from model.train import autocast_for, build_model, build_objective, build_splits, preset_config, training_step
from model.vae import one_hot
from spatialstats import _backend
from spatialstats.ops import resolve_window

REPEATS = 5
# preset, overrides, device: the CPU demo, and the paper's setting on a GPU
CASES = {
    "demo-cpu-64px-resnet18": ("demo-cpu", {}, "cpu"),
    "demo-cpu-224px-resnet18": ("demo-cpu", {"image_size": 224, "lines": LineConfig()}, "cpu"),
    "paper-224px-resnet152": ("paper", {"n_images": 64}, "cuda"),
}


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(function, device):
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[REPEATS // 2]


@pytest.mark.parametrize("case", CASES)
def test_training_step(benchmark, case):
    preset, overrides, device_type = CASES[case]
    if device_type == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device(device_type)
    config = preset_config(preset, **overrides)
    splits, n_phases = build_splits(config)
    labels = torch.stack([splits["train"][i] for i in range(config.batch_size)]).to(device)
    torch.manual_seed(0)
    vae = build_model(config, n_phases).to(device).train()
    objective = build_objective(config, statistics_range=0.2).to(device)
    optimizer = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=config.lr)
    autocast = autocast_for(config, device)
    target = one_hot(labels, n_phases)
    probabilities = torch.rand_like(target).requires_grad_()

    def step():
        training_step(vae, vae, objective, labels, optimizer, autocast)
        _synchronize(device)

    def statistics_term():
        objective.statistics_distance(probabilities, target).mean().backward()

    step()
    statistics_term()
    statistics_seconds = _median_seconds(statistics_term, device)
    benchmark.group = "training step"
    benchmark.pedantic(step, rounds=REPEATS, warmup_rounds=1)
    share = statistics_seconds / benchmark.stats.stats.median
    benchmark.extra_info.update(statistics_seconds=statistics_seconds, statistics_share=share)
    fields = probabilities[:, :1]
    window = resolve_window(config.cutoff, target.shape[2:], config.periodic, distinct_only=True)
    key = _backend.call_key("distance:fields:mse:unweighted", fields, ((0, 0),), window, config.periodic, None, True)
    benchmark.extra_info.update(backend=_backend.backend_name("auto", key))
    print(
        f"\n{case} on {device} ({benchmark.extra_info['backend']} backend): step "
        f"{benchmark.stats.stats.median * 1e3:.1f} ms, statistics term {statistics_seconds * 1e3:.2f} ms = "
        f"{100 * share:.1f}% of the step"
    )
