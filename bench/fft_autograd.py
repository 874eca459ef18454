"""FFT backend: its autograd.Function against plain autograd through rfftn/irfftn.

Prints, per case, the median forward+backward time and the bytes autograd saves for backward.
    python bench/fft_autograd.py [--repeats 7]
"""

import argparse
import time

import torch

from spatialstats import _fft
from spatialstats._common import computed_half_widths

CASES = [
    ((64, 1, 128, 128), (8, 8), False),
    ((64, 1, 128, 128), (16, 16), True),
    ((16, 1, 256, 256), (20, 20), False),
    ((4, 1, 64, 64, 64), (4, 4, 4), False),
]


def arguments(fields, pairs, window, periodic):
    """The Function's inputs: fields, non-negative or not, pairs, computed half-widths, periodic, 1 / N."""
    computed = computed_half_widths(fields.shape[2:], window, periodic)
    scale = _fft._analytic_scale(tuple(fields.shape[2:]), computed, periodic, fields.device, fields.dtype)
    return fields, False, pairs, computed, periodic, scale


def plain_autograd(fields, pairs, window, periodic):
    """The Function's forward run as plain torch code, so autograd records every operation."""
    return _fft._Correlation.forward(*arguments(fields, pairs, window, periodic))[0]


def custom_function(fields, pairs, window, periodic):
    return _fft._Correlation.apply(*arguments(fields, pairs, window, periodic))[0]


def measure(method, fields, weight, window, periodic, repeats):
    saved = [0]

    def pack(tensor):
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = method(fields, ((0, 0),), window, periodic)
    (out * weight).sum().backward()
    times = []
    for _ in range(repeats):
        fields.grad = None
        start = time.perf_counter()
        (method(fields, ((0, 0),), window, periodic) * weight).sum().backward()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], saved[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    print("shape, window, periodic, method, median fwd+bwd ms, saved MiB, input MiB")
    for shape, window, periodic in CASES:
        fields = torch.rand(shape, requires_grad=True)
        weight = torch.rand(shape[0], 1, *(2 * k + 1 for k in window))
        for name, method in (("autograd", plain_autograd), ("function", custom_function)):
            seconds, saved = measure(method, fields, weight, window, periodic, args.repeats)
            print(
                f"{shape}, {window}, {periodic}, {name}, {seconds * 1e3:.1f}, "
                f"{saved / 2**20:.1f}, {fields.numel() * 4 / 2**20:.1f}"
            )


if __name__ == "__main__":
    main()
