"""The backend contract, the registry of backends, backend choice, and the one dispatch path.

Every caller (``two_point``, ``two_point_all``, the loss, ``compat``, ``bench/sweep.py``) runs a
backend through :func:`dispatch`:

    dispatch(fields, *, pairs, half_widths, periodic, mask=None, backend="auto", nonnegative=False,
             target=None, target_stats=None, weights=None, distance="l2", return_counts=False)

fields (B, C, *spatial) -> statistics (B, P, *window); with ``target`` (B, C, *spatial) or
``target_stats`` (B, P, *window), the loss's per-sample distance (B,) instead. ``backend`` is a
name of :data:`BACKENDS` or "auto". Arguments are checked by the public functions (``ops.py``,
``loss.py``), not here.

Backend choice ("auto", or ``SPATIALSTATS_BACKEND`` when set): on the first call for a signature
(operation, device and its name, dtype, batch, channels, pairs, spatial shape, window, periodic,
mask kind, whether a gradient is needed, CPU threads) the candidates are timed on random inputs of
that signature (forward, and backward when a gradient is needed), like cudnn.benchmark, and the
fastest is kept in memory (and, with ``SPATIALSTATS_AUTOTUNE_FILE``, in a JSON file keyed by device
name and versions). Candidates: the available backends with a :data:`COST_MODEL` entry for the
device type whose estimate is within :data:`MEASURE_WITHIN` of the best estimate (so hopeless ones
are never run). ``SPATIALSTATS_AUTOTUNE=0`` chooses by the cost model instead, among measured
entries only. Under torch.compile the choice is made once, outside the traced graph.
"""

import importlib
import json
import math
import operator
import os
import platform
import threading
import time
from typing import NamedTuple, Protocol, runtime_checkable

import torch

from ._common import (
    TensorKeyedCache,
    computed_half_widths,
    counts_without_mask,
    fast_fft_size,
    per_sample_distance,
    statistics_dtype,
    window_shape,
)

BACKENDS = ("reference", "fft", "triton", "native", "conv")
BACKEND_ENV = "SPATIALSTATS_BACKEND"
AUTOTUNE_ENV = "SPATIALSTATS_AUTOTUNE"
AUTOTUNE_FILE_ENV = "SPATIALSTATS_AUTOTUNE_FILE"
_MODULES = {
    "reference": "spatialstats._ref",
    "fft": "spatialstats._fft",
    "triton": "spatialstats._triton",
    "native": "spatialstats._native",
    "conv": "spatialstats._conv",
}


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


# ----------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class Backend(Protocol):
    """What every backend module implements. Called with keywords only (after ``fields``).

    Shapes: fields (B, C, *spatial), 1 to 3 spatial axes, real (fp16, bf16, fp32 or fp64; computed
    in at least fp32); pairs ((i, j), ...) channel pairs, P of them; half_widths k_a >= 0 per spatial
    axis, the window |r_a| <= k_a (any k_a: periodic statistics repeat with period n_a, non-periodic
    displacements |r_a| >= n_a have no pairs); mask None or (Bm, *spatial) bool or [0, 1] weights,
    Bm in {1, B}; counts None or this backend's ``pair_counts`` of that mask (then it is not
    recomputed). Statistics are fp64 for fp64 fields, else fp32, and differentiable in the fields.
    """

    def unavailable_reason(self, device: torch.device) -> str | None:
        """None when the backend runs on ``device``, else why not (one sentence)."""

    def pair_counts(self, mask, *, spatial_shape, half_widths, periodic, device=None) -> torch.Tensor:
        """N(r) = sum_s m(s) m(s + r), float64: (Bm, *window), Bm = 1 without a mask."""

    def two_point(
        self, fields, *, pairs, half_widths, periodic, mask=None, counts=None, nonnegative=False
    ) -> torch.Tensor:
        """S_ij(r) for each pair: (B, P, *window). ``nonnegative`` (a bool, or a 0-dim bool tensor on
        the device): the fields are >= 0, so S must be too (a backend with round-off below 0 clamps)."""


@runtime_checkable
class FusedDistance(Protocol):
    """Optional member: the loss term in fewer passes than statistics followed by their distance."""

    def pair_distance(
        self,
        fields,
        *,
        pairs,
        half_widths,
        periodic,
        distance,
        target=None,
        target_stats=None,
        mask=None,
        counts=None,
        weights=None,
    ) -> torch.Tensor | None:
        """Per-sample distance (B,) between the statistics of ``fields`` and of ``target`` (B, C,
        *spatial) or ``target_stats`` (B, P, *window), exactly one given; weights broadcast to
        (P, *window) or None; distance in ``_common.DISTANCES``. Equal to
        ``_common.per_sample_distance(S(fields) - S(target), weights, distance)``; None where this
        backend has no faster way for these arguments."""


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------

_loaded = {}  # name -> module, or the reason it cannot be imported
_fused = set()  # the loaded modules with the optional member FusedDistance.pair_distance
_unavailable = {}  # (name, device) -> None or reason
_lock = threading.RLock()


def load(name):
    """The module of backend ``name``, or the reason (str) it cannot be imported; checked against the contract."""
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as error:
            module = f"cannot import {_MODULES[name]}: {error}"
        if not isinstance(module, str):
            if not isinstance(module, Backend):
                raise TypeError(f"{_MODULES[name]} does not implement the contract spatialstats._backend.Backend")
            if isinstance(module, FusedDistance):
                _fused.add(module)
        _loaded[name] = module
    return _loaded[name]


def unavailable_reason(name, device):
    """None when backend ``name`` can run on ``device``, else the reason it cannot (cached)."""
    device = torch.device(device)
    key = (name, device)
    if key not in _unavailable:
        module = load(name)
        _unavailable[key] = module if isinstance(module, str) else module.unavailable_reason(device)
    return _unavailable[key]


def available_backends(device=None):
    """{backend name: None if it can run on ``device`` (default: cuda if present, else cpu), else why not}."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return {name: unavailable_reason(name, device) for name in BACKENDS}


def clear_caches():
    """Forget imports, availability and measured choices (the JSON file is kept)."""
    with _lock:
        _loaded.clear()
        _unavailable.clear()
        _choices.clear()
        _resolved.clear()
        _file_loaded.clear()
        _MASK_COUNTS.clear()


# ----------------------------------------------------------------------------------------------
# Cost model: the fallback choice, and which candidates are worth measuring
# ----------------------------------------------------------------------------------------------


class Cost(NamedTuple):
    """Seconds per unit of cost relative to the fft path (1.0); ``measured``: where the ratio comes
    from, or None for an estimate, which never chooses a backend (it only decides what to measure)."""

    ratio: float
    measured: str | None


# Units: the direct backends' multiply-adds B P prod(n) prod(2k + 1) (``direct_cost``) against the
# FFT's butterflies B (C + P) G log2 G (``fft_cost``). Backends without an entry for a device type
# are never chosen by "auto" there.
# ("native", "cpu"): one thread of a 2-core AVX-512 CPU (fastest of 5 to 11 runs, forward and
#   forward + backward) over 2D 64^2 to 512^2 and 3D 32^3, 64^3, batches 1 to 8, 1 or 3 pairs,
#   cutoffs 1 to 16, periodic or not: 0.1 agrees with the faster backend in 210 of 232 cases
#   (forward) and 219 (forward + backward), every miss within 0.44x to 1.7x of break-even
#   (``python bench/calibrate_cpu.py``).
# ("triton", "cuda"), ("native", "cuda"): roofline estimates for an H100 SXM until measured on one:
#   fft ~22 bytes per grid point and transform at 3.35 TB/s (6.8e-13 s per unit); triton tf32x3 at
#   ~50% of 8.2e13 products/s with ~30% of the tiles used (4.1e-14 s per unit, ratio 0.06); native
#   float32 FMAs at ~40% of 3.35e13/s (5.5e-14 s per unit, ratio 0.08).
# ("conv", "cuda"): an estimate until measured: fp32 depthwise convolutions run on ATen's own CUDA
#   kernels, an output per thread with its taps read through L1 (two loads per multiply-add, no
#   shared-memory reuse), about a quarter of native's rate: ratio 0.3. conv has no CPU entry: on one
#   thread of a 2-core AVX-512 CPU it is 1.6x to 22x slower than native in every case of
#   bench/test_bench_conv.py and beats fft only for non-periodic cutoffs up to 4, by 1.1x to 1.6x
#   (bench/results/cpu/conv.md).
COST_MODEL = {
    ("fft", "cpu"): Cost(1.0, "the unit"),
    ("fft", "cuda"): Cost(1.0, "the unit"),
    ("native", "cpu"): Cost(0.1, "bench/calibrate_cpu.py, 1 thread, 2-core AVX-512 CPU"),
    ("triton", "cuda"): Cost(0.06, None),
    ("native", "cuda"): Cost(0.08, None),
    ("conv", "cuda"): Cost(0.3, None),
}
# Candidates whose estimate is more than this many times the best estimate are not measured.
MEASURE_WITHIN = 8.0


def direct_cost(batch, n_pairs, spatial_shape, half_widths):
    """Multiply-adds of the direct sum: B * P * prod(n) * prod(2k + 1)."""
    return batch * n_pairs * float(math.prod(spatial_shape)) * float(math.prod(window_shape(half_widths)))


def fft_cost(batch, n_channels, n_pairs, spatial_shape, half_widths, periodic):
    """Butterfly work of the FFT path: (C forward + P inverse) transforms of the (padded) grid."""
    computed = computed_half_widths(spatial_shape, half_widths, periodic)
    grid = spatial_shape if periodic else [fast_fft_size(n + c) for n, c in zip(spatial_shape, computed)]
    size = float(math.prod(grid))
    return batch * (n_channels + n_pairs) * size * max(math.log2(size), 1.0)


def estimate(name, signature):
    """Cost-model seconds (relative) of backend ``name`` for ``signature``; None without an entry."""
    cost = COST_MODEL.get((name, signature.device_type))
    if cost is None:
        return None
    n_pairs = len(signature.pairs)
    if name == "fft":
        units = fft_cost(
            signature.batch, signature.channels, n_pairs, signature.spatial, signature.half_widths, signature.periodic
        )
    else:
        units = direct_cost(signature.batch, n_pairs, signature.spatial, signature.half_widths)
    return cost.ratio * units


# ----------------------------------------------------------------------------------------------
# Measured choice
# ----------------------------------------------------------------------------------------------


class Signature(NamedTuple):
    """Everything backend choice depends on (plain values: usable as a key and in a JSON file)."""

    op: str  # "statistics" or "distance:<target kind>:<distance>:<weights or not>"
    device_type: str
    device_index: int
    device_name: str
    dtype: str
    batch: int
    channels: int
    pairs: tuple
    spatial: tuple
    half_widths: tuple
    periodic: bool
    mask: str  # "", or "<shared|per-sample> <dtype>"
    grad: bool
    threads: int


_choices = {}  # Signature -> backend name
_resolved = {}  # (backend argument, call key, environment, threads) -> backend name
_file_loaded = set()  # file paths whose choices are in _choices
_device_names = {}


def _device_name(device):
    """The GPU's name, or the CPU's model name (Linux) or architecture."""
    if device not in _device_names:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        if device.type == "cpu" and os.path.isfile("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as handle:
                models = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
            name = models[0] if models else name
        _device_names[device] = name or platform.machine()
    return _device_names[device]


def call_key(op, fields, pairs, half_widths, periodic, mask, grad):
    """What a call's :class:`Signature` depends on, from tensor metadata only (traceable; under
    torch.compile with dynamic shapes, operator.index specialises the graph on the shape, as the
    choice is)."""
    mask_kind = None if mask is None else ("shared" if mask.shape[0] == 1 else "per-sample", mask.dtype)
    return (
        op,
        fields.device,
        fields.dtype,
        tuple(map(operator.index, fields.shape)),
        tuple(pairs),
        tuple(map(operator.index, half_widths)),
        periodic,
        mask_kind,
        grad,
    )


def signature_of(key):
    """The :class:`Signature` of a :func:`call_key` (adds the device name and the CPU threads)."""
    op, device, dtype, shape, pairs, half_widths, periodic, mask_kind, grad = key
    mask = "" if mask_kind is None else f"{mask_kind[0]} {str(mask_kind[1]).removeprefix('torch.')}"
    return Signature(
        op=op,
        device_type=device.type,
        device_index=-1 if device.index is None else device.index,
        device_name=_device_name(device),
        dtype=str(dtype).removeprefix("torch."),
        batch=shape[0],
        channels=shape[1],
        pairs=tuple(tuple(p) for p in pairs),
        spatial=tuple(shape[2:]),
        half_widths=tuple(half_widths),
        periodic=periodic,
        mask=mask,
        grad=grad,
        threads=torch.get_num_threads() if device.type == "cpu" else 0,
    )


def _device(signature):
    return torch.device(signature.device_type, None if signature.device_index < 0 else signature.device_index)


def candidates(signature):
    """Backends "auto" may pick for ``signature``: available, with a cost entry for the device type
    (Triton not for float64: its float64 path runs on FMA units, not the tensor cores)."""
    device = _device(signature)
    names = []
    for name in BACKENDS:
        if (name, device.type) not in COST_MODEL or (name == "triton" and signature.dtype == "float64"):
            continue
        if unavailable_reason(name, device) is None:
            names.append(name)
    return names


def choose_by_cost_model(signature):
    """The cheapest estimate among candidates whose cost entry is measured (fft when there is none)."""
    measured = {
        name: estimate(name, signature)
        for name in candidates(signature)
        if COST_MODEL[(name, signature.device_type)].measured is not None
    }
    return min(measured, key=measured.get) if measured else "fft"


def _random_inputs(signature, module_name):
    """Arguments of :func:`_execute` for random inputs of ``signature`` (counts by that backend)."""
    device, dtype = _device(signature), getattr(torch, signature.dtype)
    shape = (signature.batch, signature.channels, *signature.spatial)
    fields = torch.rand(shape, device=device).to(dtype)
    mask = None
    if signature.mask:
        kind, mask_dtype = signature.mask.split()
        mask_shape = (1 if kind == "shared" else signature.batch, *signature.spatial)
        mask = torch.ones(mask_shape, device=device, dtype=getattr(torch, mask_dtype))
    arguments = dict(pairs=signature.pairs, half_widths=signature.half_widths, periodic=signature.periodic, mask=mask)
    if signature.op != "statistics":
        _, target_kind, distance, weighted = signature.op.split(":")
        window = (len(signature.pairs), *window_shape(signature.half_widths))
        work = statistics_dtype(dtype)
        arguments["loss"] = dict(
            target=torch.rand(shape, device=device, dtype=work) if target_kind == "fields" else None,
            target_stats=torch.rand((signature.batch, *window), device=device, dtype=work)
            if target_kind == "stats"
            else None,
            weights=torch.ones(window, device=device, dtype=work) if weighted == "weighted" else None,
            distance=distance,
        )
    module = load(module_name)
    counts = None
    if mask is not None:
        counts = module.pair_counts(
            mask, spatial_shape=signature.spatial, half_widths=signature.half_widths, periodic=signature.periodic
        )
    return fields, dict(arguments, counts=counts)


def _timed_call(module, fields, arguments, grad, device):
    """Seconds of one call (forward, and backward when ``grad``), synchronised."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    leaf = fields.detach().requires_grad_(grad)
    result = _execute(module, leaf, **arguments)
    if grad:
        torch.autograd.grad(result.sum(), leaf)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(signature, names, rounds=10, budget_s=0.1):
    """{name: best seconds} of backends ``names`` on random inputs of ``signature``, the calls of the
    candidates interleaved (best of up to ``rounds``, fewer when a round takes over ``budget_s``)."""
    device = _device(signature)
    inputs = {name: _random_inputs(signature, name) for name in names}
    best = dict.fromkeys(names, math.inf)
    with torch._C._DisableFuncTorch(), torch.autocast(device.type, enabled=False), torch.enable_grad():
        for name in names:  # warm-up: compilation, allocator, caches
            _timed_call(load(name), *inputs[name], signature.grad, device)
        started = time.perf_counter()
        for _ in range(rounds):
            for name in names:
                best[name] = min(best[name], _timed_call(load(name), *inputs[name], signature.grad, device))
            if time.perf_counter() - started > budget_s:
                break
    return best


def _autotune_file():
    """The JSON file of measured choices, or None (``SPATIALSTATS_AUTOTUNE_FILE``: "1" for the user's
    cache folder, or a path)."""
    setting = os.environ.get(AUTOTUNE_FILE_ENV, "")
    if setting in ("", "0"):
        return None
    if setting != "1":
        return setting
    folder = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(folder, "spatialstats", "autotune.json")


def _file_key(signature):
    """Choices in the file are kept per device name and versions (a new version measures anew)."""
    from . import __version__

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return (
        f"{signature.device_type} {signature.device_name} | spatialstats {__version__} | torch {torch.__version__}"
        f" | cuda {torch.version.cuda} | triton {triton_version}"
    )


def _read_file(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _load_file_choices(path, signature):
    if path in _file_loaded:
        return
    _file_loaded.add(path)
    for text, name in _read_file(path).get(_file_key(signature), {}).items():
        try:
            stored = Signature(*json.loads(text))
        except (TypeError, ValueError):
            continue
        stored = stored._replace(
            pairs=tuple(tuple(p) for p in stored.pairs),
            spatial=tuple(stored.spatial),
            half_widths=tuple(stored.half_widths),
        )
        if name in BACKENDS:
            _choices.setdefault(stored, name)


def _store_file_choice(path, signature, name):
    content = _read_file(path)
    content.setdefault(_file_key(signature), {})[json.dumps(list(signature))] = name
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        json.dump(content, handle, indent=1, sort_keys=True)
    os.replace(temporary, path)


def choose(signature):
    """The backend "auto" runs for ``signature``: measured once and cached (see the module docstring)."""
    if os.environ.get(AUTOTUNE_ENV, "1") == "0":
        return choose_by_cost_model(signature)
    choice = _choices.get(signature)
    if choice is not None:
        return choice
    with _lock:
        path = _autotune_file()
        if path is not None:
            _load_file_choices(path, signature)
        if signature in _choices:
            return _choices[signature]
        names = candidates(signature)
        estimates = {name: estimate(name, signature) for name in names}
        lowest = min(estimates.values(), default=0.0)
        names = [name for name in names if estimates[name] <= MEASURE_WITHIN * lowest] or ["fft"]
        if len(names) == 1:
            choice = names[0]
        else:
            seconds = measure(signature, names)
            choice = min(seconds, key=seconds.get)
        _choices[signature] = choice
        if path is not None:
            _store_file_choice(path, signature, choice)
        return choice


@torch.compiler.assume_constant_result
def backend_name(backend, key):
    """The backend to run for a :func:`call_key`: ``backend`` itself, or for "auto" ``SPATIALSTATS_BACKEND``
    or :func:`choose`. Raises BackendUnavailableError for a backend that cannot run on the device.
    Under torch.compile this runs once while tracing and its result is a constant of the graph."""
    if backend == "auto":
        settings = (backend, key, os.environ.get(BACKEND_ENV), os.environ.get(AUTOTUNE_ENV), torch.get_num_threads())
    else:
        settings = (backend, key)
    name = _resolved.get(settings)
    if name is None:
        name = _resolve(backend, signature_of(key))
        _resolved[settings] = name
    return name


def _resolve(backend, signature):
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto") or "auto"
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV} must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return choose(signature)
    reason = unavailable_reason(backend, _device(signature))
    if reason is not None:
        raise BackendUnavailableError(f"backend {backend!r} is unavailable on {_device(signature)}: {reason}")
    return backend


def check_backend(backend):
    """``backend`` must be "auto" or a name of :data:`BACKENDS`."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(f"backend must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    return backend


# ----------------------------------------------------------------------------------------------
# The dispatch path
# ----------------------------------------------------------------------------------------------

_MASK_COUNTS = TensorKeyedCache()


def _execute(module, fields, pairs, half_widths, periodic, mask, counts, nonnegative=False, loss=None):
    """Run ``module``: statistics, or with ``loss`` (target or target_stats, weights, distance) the
    per-sample distance, fused where the backend has a faster way."""
    if loss is None:
        return module.two_point(
            fields,
            pairs=pairs,
            half_widths=half_widths,
            periodic=periodic,
            mask=mask,
            counts=counts,
            nonnegative=nonnegative,
        )
    arguments = dict(pairs=pairs, half_widths=half_widths, periodic=periodic, mask=mask, counts=counts)
    if module in _fused:
        fused = module.pair_distance(fields, **arguments, **loss)
        if fused is not None:
            return fused
    target_stats = loss["target_stats"]
    if target_stats is None:
        target_stats = module.two_point(loss["target"], **arguments)
    stats = module.two_point(fields, **arguments)
    return per_sample_distance(stats - target_stats.to(stats.dtype), loss["weights"], loss["distance"])


def dispatch(
    fields,
    *,
    pairs,
    half_widths,
    periodic,
    mask=None,
    backend="auto",
    nonnegative=False,
    target=None,
    target_stats=None,
    weights=None,
    distance="l2",
    return_counts=False,
):
    """Run the two-point statistics (or the loss's distance) on the chosen backend.

    Args:
        fields: (B, C, *spatial) floating tensor.
        pairs: ((i, j), ...) channel pairs, P of them.
        half_widths: k_a per spatial axis; the window |r_a| <= k_a.
        periodic: wrap around the grid, or count only pairs inside it.
        mask: None or (Bm, *spatial) bool or [0, 1] weights, Bm in {1, B}; its pair counts are
            cached while the same mask tensor is passed unmodified.
        backend: "auto" or a name of :data:`BACKENDS`.
        nonnegative: the fields are >= 0 (bool or 0-dim bool tensor): statistics are clamped at 0.
        target, target_stats: for the loss, (B, C, *spatial) fields or (B, P, *window) statistics.
        weights, distance: for the loss, as in :func:`spatialstats.two_point_loss`.
        return_counts: statistics only: also return N(r) (Bm, *window), float64, a fresh tensor.

    Returns:
        Statistics (B, P, *window), fp64 for fp64 fields else fp32; or the distance (B,).
    """
    loss = None
    op = "statistics"
    grad = torch.is_grad_enabled() and fields.requires_grad
    if target is not None or target_stats is not None:
        loss = dict(target=target, target_stats=target_stats, weights=weights, distance=distance)
        kind = "stats" if target is None else "fields"
        op = f"distance:{kind}:{distance}:{'unweighted' if weights is None else 'weighted'}"
        tensors = (fields, target, target_stats, weights)
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    name = backend_name(backend, call_key(op, fields, pairs, half_widths, periodic, mask, grad))
    module = load(name)
    counts = None
    if mask is not None:
        spatial = tuple(fields.shape[2:])
        counts = _MASK_COUNTS.get(
            mask,
            (name, spatial, tuple(half_widths), periodic),
            lambda: module.pair_counts(mask, spatial_shape=spatial, half_widths=half_widths, periodic=periodic),
        )
    device_type = fields.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type, enabled=False):
            result = _execute(module, fields, pairs, half_widths, periodic, mask, counts, nonnegative, loss)
    else:
        result = _execute(module, fields, pairs, half_widths, periodic, mask, counts, nonnegative, loss)
    if not return_counts:
        return result
    if counts is None:
        counts = counts_without_mask(tuple(fields.shape[2:]), tuple(half_widths), periodic, fields.device)
    return result, counts.clone()
