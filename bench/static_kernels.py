"""Static figures of the Triton kernels, compiled offline for Hopper (sm_90a) without a GPU.

For each case (op, batch, phases, spatial shape, cutoff, dtype, float32 precision) the script runs
the Triton backend's launchers on meta tensors, records every kernel launch (grid, arguments, block
sizes, warps, stages), compiles each distinct kernel with ``triton.compile`` for
``GPUTarget("cuda", 90, 32)`` (Triton's bundled ptxas and cuobjdump) and reads off the result:
registers, spills, shared memory, and the SASS instruction mix (MMA, FP32 FMA, loads) of the whole
kernel and of its hot loop (the innermost loop holding the MMAs). With the launch geometry that
gives the dynamic warp-instructions per useful multiply-add, the occupancy and an ESTIMATE of the
time on an H100 SXM, set beside an estimate of the fft backend (cuFFT) with the same model.

The model (every time it prints is an estimate, never a measurement):
- per kernel, the largest of: issue time (the warp-instructions of ceil(programs / 132) programs,
  the share of the busiest SM, at 4 per clock and 1.755 GHz), tensor-core time (MMA multiply-adds
  issued / the dense peak per SM: 2048 bf16/fp16, 1024 TF32 per clock for wgmma (HGMMA), two thirds
  of that for mma.sync (HMMA)), FP32 FMA time (128 per clock per SM), L1 / shared-memory time (the
  bytes of the hot loop's loads, stores and wgmma operands at 128 per clock per SM: every load an L1
  hit), L2 time (each distinct tile row a program reads, once, at 10 TB/s) and DRAM time (every
  tensor argument read or written once, 3.0 TB/s achievable of the 3.35 TB/s datasheet figure);
- dynamic instructions per program = hot-loop body x its trips + the code of the loops around it
  x their trips + the rest once; trips come from the launch geometry;
- torch operations between the kernels (padding, counts, small reductions) and the fft path: one
  memory-bound kernel each, reading its inputs and writing its outputs once;
- plus 2 us per kernel launch (launch and gap between dependent kernels), shown separately.
"Useful" multiply-adds are those an exact direct method needs: B P prod(n) |W| per direction, half
the window (|W| + 1) / 2 for the forward of an auto-correlation (centrosymmetric), |W| per output
value for the backward.

    python bench/static_kernels.py [--out bench/results/static] [--label after] [--quick]

writes OUT/<label>_triton-<version>.csv (one row per kernel launch and case) and .md (the short
table of the README). Runs with any Triton from 3.6 on; ``TRITON_INTERPRET`` must be unset.
"""

import argparse
import collections
import contextlib
import csv
import datetime
import io
import math
import os
import re
import subprocess
import sys
import tempfile
import types
from typing import NamedTuple

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime import jit as triton_jit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spatialstats import _fft, _triton
from spatialstats._common import per_sample_distance
from spatialstats._triton import correlation
from spatialstats._triton import loss as triton_loss


class Hardware(NamedTuple):
    name: str = "H100 SXM (model)"
    multiprocessors: int = 132
    clock_hz: float = 1.755e9
    issue_per_clock: int = 4  # warp-instructions per clock per SM (4 schedulers)
    dram_bytes_per_s: float = 3.0e12
    fma_per_clock: int = 128  # FP32 FMA per clock per SM
    lsu_bytes_per_clock: int = 128  # L1 / shared memory bytes per clock per SM
    l2_bytes_per_s: float = 10e12  # L2 to SMs, all SMs together (reported 10 to 12 TB/s)
    launch_s: float = 2e-6
    registers: int = 65536
    shared_bytes: int = 233472  # 228 KiB per SM
    max_warps: int = 64
    max_programs: int = 32


H100 = Hardware()
# Dense multiply-adds per clock per SM of the tensor cores: wgmma (HGMMA); mma.sync (HMMA) is
# taken at two thirds of that (an assumption: it needs a register round trip per instruction).
TENSOR_MACS = {"bf16": 2048, "f16": 2048, "tf32": 1024, "f64": 128}
HMMA_EFFICIENCY = 2 / 3


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------


class Case(NamedTuple):
    op: str  # "loss" (fused forward + backward) or "stats" (forward)
    batch: int
    phases: int
    spatial: tuple
    cutoff: object  # int or None
    dtype: str  # "float32", "bfloat16"
    precision: str  # float32: "tf32x3" (torch's default "highest") or "tf32" ("high"); else ""

    @property
    def name(self):
        cutoff = "None" if self.cutoff is None else self.cutoff
        shape = "x".join(map(str, self.spatial))
        dtype = f"{self.dtype}/{self.precision}" if self.precision else self.dtype
        return f"{self.op} b{self.batch} c{self.phases} {shape} k{cutoff} {dtype}"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cases(quick):
    """The goal shapes first (loss and statistics, batch 256, one phase, 128^2, cutoffs 4, 8, 16),
    then 64^3 and the full window (cutoff None)."""
    goal = [
        Case(op, 256, 1, (128, 128), cutoff, dtype, precision)
        for cutoff in (4, 8, 16)
        for op in ("loss", "stats")
        for dtype, precision in (("float32", "tf32x3"), ("float32", "tf32"), ("bfloat16", ""))
    ]
    if quick:
        return [c for c in goal if c.cutoff == 8 and c.op == "loss"]
    others = [
        Case("loss", 64, 1, (64, 64, 64), 4, "bfloat16", ""),
        Case("loss", 64, 1, (64, 64, 64), 8, "bfloat16", ""),
        Case("loss", 256, 3, (128, 128), 8, "bfloat16", ""),
        Case("stats", 256, 1, (128, 128), None, "bfloat16", ""),
    ]
    return goal + others


def window_of(case):
    periodic = True
    if case.cutoff is None:
        return tuple((n - 1) // 2 for n in case.spatial), periodic
    return (case.cutoff,) * len(case.spatial), periodic


def useful_macs(case):
    """(forward, backward) multiply-adds of an exact direct method; see the module docstring."""
    window, _ = window_of(case)
    size = math.prod(case.spatial)
    cells = math.prod(2 * k + 1 for k in window)
    forward = case.batch * case.phases * size * (cells + 1) // 2
    backward = case.batch * case.phases * size * cells if case.op == "loss" else 0
    return forward, backward


# ----------------------------------------------------------------------------------------------
# Launch capture: the backend's launchers on meta tensors, with kernel[grid](...) recorded
# ----------------------------------------------------------------------------------------------


class Launch(NamedTuple):
    kernel: object  # triton JITFunction
    grid: tuple
    args: dict  # every parameter by name, constexprs included
    options: dict  # num_warps, num_stages


class TorchOp(NamedTuple):
    name: str
    bytes: int


@contextlib.contextmanager
def recorded_launches():
    """Record ``kernel[grid](...)`` calls instead of running them."""
    launches = []
    interface = triton_jit.KernelInterface

    def getitem(kernel, grid):
        def record(*args, **kwargs):
            options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
            bound = dict(zip(kernel.arg_names, args))
            bound.update(kwargs)
            launches.append(Launch(kernel, tuple(grid), bound, options))

        return record

    saved = interface.__getitem__
    interface.__getitem__ = getitem
    try:
        yield launches
    finally:
        interface.__getitem__ = saved


# Operations that launch no kernel.
_NO_KERNEL = {
    "scalar_tensor",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "detach",
    "lift_fresh",
}


class _TorchOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Each aten operation that launches a kernel: its name and the bytes it reads and writes."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not func.is_view and name.rstrip("_") not in _NO_KERNEL and not name.startswith("_local_scalar"):
            tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
            self.ops.append(TorchOp(name, sum(t.numel() * t.element_size() for t in tensors)))
        return out


def _meta_inputs(case):
    dtype = DTYPES[case.dtype]
    fields = torch.empty((case.batch, case.phases, *case.spatial), device="meta", dtype=dtype)
    pairs = tuple((p, p) for p in range(case.phases))
    return fields, pairs


def triton_launches(case, hardware):
    """(launches, torch ops) of the Triton backend for ``case``: statistics forward, or the fused
    loss forward and its backward."""
    fields, pairs = _meta_inputs(case)
    window, periodic = window_of(case)
    with recorded_launches() as launches, _TorchOps() as torch_ops:
        prepared = _triton._prepare(fields, pairs, None, None, window, periodic)
        if case.precision:
            prepared = prepared._replace(precision=case.precision)
        if case.op == "stats":
            correlation._forward(prepared.fields, prepared.pairs, prepared.half_widths3, periodic, prepared.precision)
        else:
            shape = (case.batch, len(pairs), *(2 * k + 1 for k in prepared.half_widths3))
            target = torch.empty(shape, device="meta")
            inverse_counts = prepared.inverse_counts.reshape(1, *shape[2:])
            options = (prepared.pairs, prepared.half_widths3, periodic, prepared.precision)
            distances, weighted_diff, padded = triton_loss._forward(
                prepared.fields, target, None, inverse_counts, *options, "l2"
            )
            # The mean over the batch and its gradient (as the sweep's loss step), then the op's backward.
            distances.requires_grad_(True)
            distances.mean().backward()
            context = types.SimpleNamespace(
                saved_tensors=(prepared.fields, None, inverse_counts, distances, weighted_diff, padded),
                options=options,
                distance="l2",
                needs_input_grad=(True, False),
            )
            saved, triton_loss.correlate_backward = triton_loss.correlate_backward, correlation._backward
            try:
                triton_loss._weighted_distance_grad(context, distances.grad, None, None)
            finally:
                triton_loss.correlate_backward = saved
    return launches, torch_ops.ops


def fft_ops(case):
    """Torch operations of the fft backend for ``case`` (the loss with autograd, as bench/sweep.py runs it)."""
    fields, pairs = _meta_inputs(case)
    window, periodic = window_of(case)
    with _TorchOps() as torch_ops:
        if case.op == "stats":
            _fft.two_point(fields, pairs=pairs, half_widths=window, periodic=periodic)
        else:
            fields.requires_grad_(True)
            target = torch.empty((case.batch, len(pairs), *(2 * k + 1 for k in window)), device="meta")
            stats = _fft.two_point(fields, pairs=pairs, half_widths=window, periodic=periodic)
            distance = per_sample_distance(stats - target, None, "l2")
            distance.mean().backward()
    return torch_ops.ops


# ----------------------------------------------------------------------------------------------
# Offline compilation and the SASS
# ----------------------------------------------------------------------------------------------


class Compiled(NamedTuple):
    registers: int
    spill_bytes: int  # spill stores + loads, bytes (ptxas)
    stack_bytes: int
    shared_bytes: int
    num_warps: int
    num_stages: int
    dots: int  # tile products per trip: tt.dot operations of the TTIR, 3 for a tf32x3 one
    sass: list  # [(address, opcode, operands)]


_PTXAS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")
_SASS_LINE = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T\d]\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Za-z0-9_]+)*)(.*)$")


def _disassemble(cubin):
    """SASS with addresses (cuobjdump -sass), so that loops show as backward branches."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kernel.cubin")
        with open(path, "wb") as handle:
            handle.write(cubin)
        return subprocess.run(
            [triton.knobs.nvidia.cuobjdump.path, "-sass", path], capture_output=True, text=True, check=True
        ).stdout


def compile_launch(launch, target, cache):
    """Compile the launch's specialisation for ``target``; the ptxas report is captured."""
    kernel, args = launch.kernel, launch.args
    backend = make_backend(target)
    binder = triton_jit.create_function_from_signature(kernel.signature, kernel.params, backend)
    positional = [args[name] for name in kernel.arg_names]
    bound, specialization, options = binder(*positional, **launch.options)
    options, signature, constexprs, attrs = kernel._pack_args(backend, launch.options, bound, specialization, options)
    key = (kernel.fn.__qualname__, repr((signature, constexprs, attrs, sorted(options.__dict__.items()))))
    if key in cache:
        return cache[key]
    log = io.StringIO()
    knobs = triton.knobs
    saved = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = True, True
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__
            )
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = saved
    report = log.getvalue()
    spills = _PTXAS.search(report)
    sass = []
    for line in _disassemble(compiled.asm["cubin"]).splitlines():
        match = _SASS_LINE.match(line)
        if match:
            sass.append((int(match.group(1), 16), match.group(2), match.group(3)))
    result = Compiled(
        registers=int(_REGISTERS.search(report).group(1)),
        spill_bytes=int(spills.group(2)) + int(spills.group(3)),
        stack_bytes=int(spills.group(1)),
        shared_bytes=compiled.metadata.shared,
        num_warps=compiled.metadata.num_warps,
        num_stages=compiled.metadata.num_stages,
        dots=sum(3 if "tf32x3" in line else 1 for line in compiled.asm["ttir"].splitlines() if " tt.dot " in line),
        sass=sass,
    )
    cache[key] = result
    return result


def _mma_macs(opcode):
    """(multiply-adds per warp-instruction, input type, is_wgmma) of an MMA opcode, else None."""
    parts = opcode.split(".")
    kind = next((p for p in parts[1:] if p in ("TF32", "BF16", "F16", "F64")), "F16")
    if parts[0] == "HMMA":
        shape = parts[1]  # "1688", "16816", "1684"
        m, n, k = 16, 8, int(shape[3:])
        return m * n * k, kind.lower(), False
    if parts[0] == "HGMMA":
        m, n, k = (int(v) for v in parts[1].split("x"))
        return m * n * k // 4, kind.lower(), True  # issued by each warp of the warpgroup
    if parts[0] == "DMMA":
        return 8 * 8 * 4, "f64", False
    return None


class SassFigures(NamedTuple):
    total: int  # SASS instructions
    mma: int
    ffma: int  # FP32 FFMA, FMUL, FADD
    loads: int  # LDG, LDS, LDSM, LDGSTS
    hot_body: int  # instructions of the hot loop body
    hot_mma: int
    hot_ffma: int
    hot_loads: int
    hot_macs: int  # MMA multiply-adds per warp per trip
    hot_lsu_bytes: float  # bytes through L1 / shared memory per warp per trip (loads, stores, wgmma operands)
    enclosing: int  # instructions of the loops around the hot loop, the hot loop excluded
    mma_type: str
    wgmma: bool


def _category(opcode):
    base = opcode.split(".")[0]
    if _mma_macs(opcode):
        return "mma"
    if base in ("FFMA", "FMUL", "FADD"):
        return "ffma"
    if base in ("LDG", "LDS", "LDSM", "LDGSTS", "LD", "UTMALDG"):
        return "load"
    return "other"


_ELEMENT_BYTES = {"bf16": 2, "f16": 2, "tf32": 4, "f64": 8}


def _lsu_bytes(opcode, operands):
    """Bytes one warp moves through L1 / shared memory with one instruction (0 for others)."""
    parts = opcode.split(".")
    if parts[0] == "HGMMA":  # B (and A, when not in registers) read from shared memory by the warpgroup
        m, n, k = (int(v) for v in parts[1].split("x"))
        size = _ELEMENT_BYTES[_mma_macs(opcode)[1]]
        a_in_shared = operands.split(",")[1].strip().startswith("gdesc")
        return (n * k + (m * k if a_in_shared else 0)) * size / 4
    if parts[0] not in ("LDG", "LDS", "STS", "LDSM", "STSM", "LDGSTS"):
        return 0
    if parts[0] in ("LDSM", "STSM"):
        lane = {"4": 16, "2": 8}.get(parts[-1], 4)
    elif "128" in parts:
        lane = 16
    elif "64" in parts:
        lane = 8
    elif {"U16", "S16"} & set(parts):
        lane = 2
    elif {"U8", "S8"} & set(parts):
        lane = 1
    else:
        lane = 4
    return 32 * lane


def sass_figures(sass):
    loops = []  # (start, end) address ranges of backward branches
    for address, opcode, operands in sass:
        if opcode.startswith("BRA"):
            target = re.search(r"0x([0-9a-f]+)", operands)
            if target and int(target.group(1), 16) < address:
                loops.append((int(target.group(1), 16), address))

    def inside(address, loop):
        return loop[0] <= address <= loop[1]

    mma_addresses = [a for a, op, _ in sass if _category(op) == "mma"]
    candidates = [loop for loop in loops if any(inside(a, loop) for a in mma_addresses)] or loops
    hot = min(candidates, key=lambda loop: loop[1] - loop[0]) if candidates else None
    counts = collections.Counter(_category(op) for _, op, _ in sass)
    hot_ops = [(a, op) for a, op, _ in sass if hot and inside(a, hot)]
    hot_lsu_bytes = sum(_lsu_bytes(op, operands) for a, op, operands in sass if hot and inside(a, hot))
    hot_counts = collections.Counter(_category(op) for _, op in hot_ops)
    enclosing_loops = [loop for loop in loops if hot and loop != hot and loop[0] <= hot[0] and hot[1] <= loop[1]]
    enclosing = 0
    if enclosing_loops:
        outer = max(enclosing_loops, key=lambda loop: loop[1] - loop[0])
        enclosing = sum(1 for a, _, _ in sass if inside(a, outer) and not inside(a, hot))
    mmas = [_mma_macs(op) for _, op in hot_ops if _mma_macs(op)] or [
        _mma_macs(op) for _, op, _ in sass if _mma_macs(op)
    ]
    return SassFigures(
        total=len(sass),
        mma=counts["mma"],
        ffma=counts["ffma"],
        loads=counts["load"],
        hot_body=len(hot_ops),
        hot_mma=hot_counts["mma"],
        hot_ffma=hot_counts["ffma"],
        hot_loads=hot_counts["load"],
        hot_macs=sum(m[0] for m in mmas if hot_ops) if hot_counts["mma"] else 0,
        hot_lsu_bytes=hot_lsu_bytes,
        enclosing=enclosing,
        mma_type=mmas[0][1] if mmas else "",
        wgmma=bool(mmas and mmas[0][2]),
    )


# ----------------------------------------------------------------------------------------------
# Work of each kernel: hot-loop trips and loop entries per program, from its launch arguments
# ----------------------------------------------------------------------------------------------


class Work(NamedTuple):
    programs: int
    trips: float  # hot-loop trips per program
    entries: float  # hot-loop entries per program (trips of the loops around it)
    tile_macs: int  # multiply-adds of one hot-loop trip's tile product (one pass)
    direction: str  # "forward", "backward" or "" (no multiply-adds of the statistics)
    l2_bytes: float = 0.0  # per program, read from L2 (each distinct tile row once; L1 serves repeats)


def kernel_work(launch):
    a, grid = launch.args, launch.grid
    programs = math.prod(grid)
    name = launch.kernel.fn.__name__
    if name == "_correlation_forward_kernel":
        size = a["padded_ptr"].element_size()
        entries = a["n0"] * triton.cdiv(a["n2"], a["NARROW"])
        trips = entries * triton.cdiv(a["n1"], a["ROWS"])
        tile = a["SHIFTS"] * a["NARROW"] * a["BAND"] * a["ROWS"]
        step_bytes = ((a["ROWS"] + a["SHIFTS"] - 1) * a["NARROW"] + a["ROWS"] * a["BAND"]) * size
        return Work(programs, trips, entries, tile, "forward", trips * step_bytes)
    if name == "_correlation_backward_kernel":
        size = a["padded_ptr"].element_size()
        entries = a["n_terms"] / a["n_channels"] * (2 * a["k0"] + 1)
        trips = entries * (2 * a["k1"] + 1)
        tile = a["ROW_BLOCK"] * a["NARROW"] * a["BAND"]
        return Work(
            programs, trips, entries, tile, "backward", entries * (a["ROW_BLOCK"] + 2 * a["k1"]) * a["BAND"] * size
        )
    if name == "_pad_kernel":
        return Work(programs, triton.cdiv(a["width"], a["BLOCK_COLS"]), 1, 0, "")
    if name == "_gradient_maps_kernel":
        return Work(programs, a["n_pairs"], 1, 0, "")
    if name == "_weighted_distance_kernel":
        return Work(programs, triton.cdiv(a["n_values"], a["BLOCK"]), 1, 0, "")
    raise ValueError(f"no work model for kernel {name}")


# ----------------------------------------------------------------------------------------------
# Figures and the estimate
# ----------------------------------------------------------------------------------------------


def residency(compiled, hardware):
    """(programs per SM, occupancy in warps / 64)."""
    warps = compiled.num_warps
    per_warp = math.ceil(max(compiled.registers, 1) * 32 / 256) * 256
    by_registers = hardware.registers // per_warp // warps
    by_shared = hardware.shared_bytes // (compiled.shared_bytes + 1024)
    programs = max(0, min(by_registers, by_shared, hardware.max_programs, hardware.max_warps // warps))
    return programs, programs * warps / hardware.max_warps


def launch_bytes(launch):
    """DRAM bytes of a launch: every tensor argument read or written once."""
    return sum(t.numel() * t.element_size() for t in launch.args.values() if isinstance(t, torch.Tensor))


def estimate_launch(launch, compiled, figures, hardware):
    work = kernel_work(launch)
    resident, occupancy = residency(compiled, hardware)
    warps = compiled.num_warps
    # The compiler may unroll the hot loop: trips of the SASS loop = trips of the source loop / unroll.
    unroll = 1
    if work.tile_macs and figures.hot_macs:
        unroll = max(1, round(figures.hot_macs * warps / (work.tile_macs * max(compiled.dots, 1))))
    trips = work.trips / unroll
    per_program = figures.hot_body * trips + figures.enclosing * work.entries
    per_program += figures.total - figures.hot_body - figures.enclosing
    # Each SM issues for its share of the programs, ceil(programs / SMs) of them, at 4 per clock.
    per_sm = math.ceil(work.programs / hardware.multiprocessors)
    clocks = hardware.clock_hz
    issue_s = per_sm * warps * per_program / (hardware.issue_per_clock * clocks)
    mma_macs = work.programs * warps * figures.hot_macs * trips
    rate = TENSOR_MACS.get(figures.mma_type, 1) * (1.0 if figures.wgmma else HMMA_EFFICIENCY)
    tensor_s = per_sm * warps * figures.hot_macs * trips / (rate * clocks) if mma_macs else 0.0
    fma_s = per_sm * warps * 32 * figures.hot_ffma * trips / (hardware.fma_per_clock * clocks)
    lsu_s = per_sm * warps * figures.hot_lsu_bytes * trips / (hardware.lsu_bytes_per_clock * clocks)
    dram_s = launch_bytes(launch) / hardware.dram_bytes_per_s
    l2_s = work.programs * work.l2_bytes / hardware.l2_bytes_per_s
    return dict(
        programs=work.programs,
        resident=resident,
        occupancy=round(occupancy, 3),
        instructions=work.programs * warps * per_program,
        mma_passes=compiled.dots if work.tile_macs else 0,
        mma_macs=mma_macs,
        issue_us=issue_s * 1e6,
        tensor_us=tensor_s * 1e6,
        fma_us=fma_s * 1e6,
        lsu_us=lsu_s * 1e6,
        l2_us=l2_s * 1e6,
        dram_us=dram_s * 1e6,
        device_us=max(issue_s, tensor_s, fma_s, lsu_s, l2_s, dram_s) * 1e6,
        bound=max(
            (("issue", issue_s), ("tensor", tensor_s), ("fma", fma_s), ("lsu", lsu_s), ("l2", l2_s), ("dram", dram_s)),
            key=lambda item: item[1],
        )[0],
        direction=work.direction,
    )


def torch_ops_us(ops, hardware):
    return sum(op.bytes for op in ops) / hardware.dram_bytes_per_s * 1e6


FIELDS = [
    "date",
    "triton",
    "case",
    "kernel",
    "config",
    "grid",
    "programs",
    "registers",
    "spill_bytes",
    "shared_bytes",
    "num_warps",
    "num_stages",
    "resident_per_sm",
    "occupancy",
    "sass_total",
    "sass_mma",
    "sass_ffma",
    "hot_body",
    "hot_mma",
    "hot_ffma",
    "hot_loads",
    "mma_type",
    "mma_passes",
    "useful_macs",
    "instructions_per_useful_mac",
    "issue_us_est",
    "tensor_us_est",
    "lsu_us_est",
    "l2_us_est",
    "dram_us_est",
    "device_us_est",
    "bound",
]


def _config(launch):
    constexprs = {k: v for k, v in launch.args.items() if k.isupper()}
    parts = [f"{k}={v}" for k, v in constexprs.items()]
    parts += [f"{k}={v}" for k, v in launch.options.items()]
    return " ".join(parts)


def run(out, label, quick, hardware=H100):
    target = GPUTarget("cuda", 90, 32)
    today = datetime.date.today().isoformat()
    version = triton.__version__
    rows, summary, cache = [], [], {}
    for case in cases(quick):
        triton_launches(case, hardware)  # a first call fills the backend's caches (counts, indices)
        launches, glue = triton_launches(case, hardware)
        forward_useful, backward_useful = useful_macs(case)
        kernels_us, launch_count = 0.0, len(launches) + len(glue)
        per_kernel = []
        for launch in launches:
            compiled = compile_launch(launch, target, cache)
            figures = sass_figures(compiled.sass)
            estimate = estimate_launch(launch, compiled, figures, hardware)
            useful = {"forward": forward_useful, "backward": backward_useful}.get(estimate["direction"], 0)
            kernels_us += estimate["device_us"]
            per_kernel.append((launch, compiled, figures, estimate, useful))
            rows.append(
                dict(
                    date=today,
                    triton=version,
                    case=case.name,
                    kernel=launch.kernel.fn.__name__,
                    config=_config(launch),
                    grid="x".join(map(str, launch.grid)),
                    programs=estimate["programs"],
                    registers=compiled.registers,
                    spill_bytes=compiled.spill_bytes,
                    shared_bytes=compiled.shared_bytes,
                    num_warps=compiled.num_warps,
                    num_stages=compiled.num_stages,
                    resident_per_sm=estimate["resident"],
                    occupancy=estimate["occupancy"],
                    sass_total=figures.total,
                    sass_mma=figures.mma,
                    sass_ffma=figures.ffma,
                    hot_body=figures.hot_body,
                    hot_mma=figures.hot_mma,
                    hot_ffma=figures.hot_ffma,
                    hot_loads=figures.hot_loads,
                    mma_type=figures.mma_type + (" wgmma" if figures.wgmma else ""),
                    mma_passes=estimate["mma_passes"],
                    useful_macs=useful,
                    instructions_per_useful_mac=round(estimate["instructions"] / useful, 4) if useful else "",
                    issue_us_est=round(estimate["issue_us"], 2),
                    tensor_us_est=round(estimate["tensor_us"], 2),
                    lsu_us_est=round(estimate["lsu_us"], 2),
                    l2_us_est=round(estimate["l2_us"], 2),
                    dram_us_est=round(estimate["dram_us"], 2),
                    device_us_est=round(estimate["device_us"], 2),
                    bound=estimate["bound"],
                )
            )
        glue_us = torch_ops_us(glue, hardware)
        fft_ops(case)
        fft = fft_ops(case)
        fft_us = torch_ops_us(fft, hardware)
        triton_total = kernels_us + glue_us + launch_count * hardware.launch_s * 1e6
        fft_total = fft_us + len(fft) * hardware.launch_s * 1e6
        summary.append((case, per_kernel, glue_us, launch_count, triton_total, fft_us, len(fft), fft_total))
        print(
            f"{case.name:44s} triton {triton_total:8.1f} us est ({kernels_us:.1f} kernels, {launch_count} launches)"
            f"  fft {fft_total:8.1f} us est ({len(fft)} kernels)",
            flush=True,
        )
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"{label}_triton-{version}")
    with open(stem + ".csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    with open(stem + ".md", "w") as handle:
        handle.write(markdown(summary, label, version, today, hardware))
    print(f"wrote {stem}.csv and {stem}.md")


def markdown(summary, label, version, today, hardware):
    lines = [
        f"# Static figures of the Triton kernels ({label}): Triton {version}, sm_90a, {today}",
        "",
        f"Offline compilation (`python bench/static_kernels.py`), no GPU. Times are ESTIMATES of the model in "
        f"`bench/static_kernels.py` ({hardware.name}: {hardware.multiprocessors} SMs at "
        f"{hardware.clock_hz / 1e9:.3f} GHz, {hardware.issue_per_clock} warp-instructions per clock per SM, "
        f"{hardware.lsu_bytes_per_clock} B per clock per SM from L1 / shared memory, "
        f"{hardware.l2_bytes_per_s / 1e12:.0f} TB/s from L2, {hardware.dram_bytes_per_s / 1e12:.1f} TB/s from DRAM, "
        f"{hardware.launch_s * 1e6:.0f} us per launch), never measurements. instr/MAC: dynamic warp-instructions "
        "per useful multiply-add; bound: the limit the estimate hits (issue, tensor, lsu = L1 / shared memory, "
        "l2, dram).",
        "",
        "| case | kernel | regs | spill B | smem KiB | warps/stages | occupancy | SASS (hot loop) | MMA (hot) "
        "| FFMA (hot) | MMA passes | instr/MAC | kernel us (est.) | bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    totals = []
    for case, per_kernel, glue_us, launches, triton_total, _, fft_kernels, fft_total in summary:
        for launch, compiled, figures, estimate, useful in per_kernel:
            per_mac = f"{estimate['instructions'] / useful:.3f}" if useful else "-"
            lines.append(
                f"| {case.name} | {launch.kernel.fn.__name__.strip('_')} | {compiled.registers} | "
                f"{compiled.spill_bytes} | {compiled.shared_bytes / 1024:.1f} | "
                f"{compiled.num_warps}/{compiled.num_stages} | {estimate['occupancy']:.2f} | "
                f"{figures.total} ({figures.hot_body}) | {figures.mma} ({figures.hot_mma}) | "
                f"{figures.ffma} ({figures.hot_ffma}) | {estimate['mma_passes']} | {per_mac} | "
                f"{estimate['device_us']:.1f} | {estimate['bound']} |"
            )
        totals.append(
            f"| {case.name} | {triton_total:.0f} | {launches} | {glue_us:.1f} | {fft_total:.0f} | {fft_kernels} | "
            f"{fft_total / triton_total:.2f} |"
        )
    lines += [
        "",
        "Whole operation, estimates (kernels + torch operations between them + launches):",
        "",
        "| case | triton us (est.) | launches | torch ops us | fft us (est.) | fft kernels | fft / triton |",
        "|---|---|---|---|---|---|---|",
        *totals,
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "static"))
    parser.add_argument("--label", default="current", help="file name prefix, e.g. before or after")
    parser.add_argument("--quick", action="store_true", help="the goal loss at cutoff 8 only")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("unset TRITON_INTERPRET: the kernels must compile, not run in the interpreter")
    with tempfile.TemporaryDirectory() as cache:
        triton.knobs.cache.dir = cache
        run(args.out, args.label, args.quick)


if __name__ == "__main__":
    sys.exit(main())
