"""The backend contract, the registry, the one dispatch path, caches and the measured ``auto``."""

import ast
import json
import pathlib
import threading

import numpy as np
import pytest
import torch

import spatialstats as ss
from spatialstats import _backend, _common, _fft, _native, _ref

PACKAGE = pathlib.Path(ss.__file__).parent
BACKEND_FILES = {
    "spatialstats._ref": ["_ref.py"],
    "spatialstats._fft": ["_fft.py"],
    "spatialstats._native": ["_native.py"],
    "spatialstats._conv": ["_conv.py"],
    "spatialstats._triton": ["_triton/__init__.py", "_triton/correlation.py", "_triton/loss.py"],
}


@pytest.fixture
def fresh_choices(monkeypatch):
    """Measured choices and the environment as on a fresh start, restored afterwards."""
    for variable in (_backend.BACKEND_ENV, _backend.AUTOTUNE_ENV, _backend.AUTOTUNE_FILE_ENV):
        monkeypatch.delenv(variable, raising=False)
    _backend.clear_caches()
    yield
    _backend.clear_caches()


def imported_modules(path):
    """Every module a file imports, relative imports resolved within spatialstats."""
    tree = ast.parse(path.read_text())
    package = ["spatialstats", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_every_backend_implements_the_contract():
    for name in ("reference", "fft", "native", "conv"):
        assert isinstance(_backend.load(name), _backend.Backend), name
    assert isinstance(_fft, _backend.FusedDistance)
    assert not isinstance(_ref, _backend.FusedDistance) and not isinstance(_native, _backend.FusedDistance)


def test_no_backend_imports_another_and_the_library_never_imports_model():
    for module, files in BACKEND_FILES.items():
        forbidden = (set(BACKEND_FILES) - {module}) | {"spatialstats.loss", "spatialstats.ops", "spatialstats._backend"}
        for file in files:
            imports = imported_modules(PACKAGE / file)
            assert not imports & forbidden, (file, imports & forbidden)
    for path in PACKAGE.rglob("*.py"):
        assert not any(m == "model" or m.startswith("model.") for m in imported_modules(path)), path


def test_backends_take_keywords_only():
    fields = torch.rand(1, 1, 5, 5)
    with pytest.raises(TypeError):
        _fft.two_point(fields, ((0, 0),), None, (1, 1), True)
    stats = _fft.two_point(fields, pairs=((0, 0),), half_widths=(1, 1), periodic=True)
    assert stats.shape == (1, 1, 3, 3)


def test_dispatch_runs_the_named_backend_and_the_distance(fresh_choices):
    gen = torch.Generator().manual_seed(0)
    fields, target = torch.rand(2, 2, 7, 6, dtype=torch.float64, generator=gen).unbind(0)
    fields, target = fields[None], target[None]
    options = dict(pairs=((0, 0), (0, 1)), half_widths=(2, 3), periodic=False)
    expected = _backend.dispatch(fields, backend="reference", **options)
    for name in ("fft", "native"):
        torch.testing.assert_close(_backend.dispatch(fields, backend=name, **options), expected)
        distance = _backend.dispatch(fields, target=target, distance="mse", backend=name, **options)
        reference = _backend.dispatch(target, backend="reference", **options)
        torch.testing.assert_close(distance, (expected - reference).square().flatten(1).mean(1))


def test_counts_are_a_fresh_tensor_each_time():
    """Changing the counts handed out must not change later results (they are cached inside)."""
    x = np.random.default_rng(1).random((6, 6))
    first, counts = ss.two_point(x, cutoff=2, periodic=False, return_counts=True)
    counts[...] = -1.0
    again, counts_again = ss.two_point(x, cutoff=2, periodic=False, return_counts=True)
    np.testing.assert_array_equal(again, first)
    assert counts_again.min() > 0
    t = torch.rand(6, 6)
    _, counts = ss.two_point(t, cutoff=2, return_counts=True, backend="fft")
    counts.zero_()
    assert ss.two_point(t, cutoff=2, return_counts=True, backend="fft")[1].min() == 36


def test_mask_counts_are_cached_by_mask_identity(monkeypatch):
    calls = []
    original = _fft.pair_counts

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_fft, "pair_counts", counting)
    x, mask = torch.rand(2, 8, 8), torch.rand(8, 8) > 0.3
    first = ss.two_point(x, cutoff=2, mask=mask, backend="fft")
    torch.testing.assert_close(ss.two_point(x, cutoff=2, mask=mask, backend="fft"), first)
    assert len(calls) == 1
    mask[0, 0] = not mask[0, 0]  # modified in place: counts anew
    changed = ss.two_point(x, cutoff=2, mask=mask, backend="fft")
    assert len(calls) == 2
    torch.testing.assert_close(changed, ss.two_point(x, cutoff=2, mask=mask.clone(), backend="reference"))


def test_caches_are_bypassed_inside_torch_func():
    seen = []
    torch.func.vmap(lambda t: seen.append(_common.caching_allowed()) or t)(torch.zeros(2))
    assert _common.caching_allowed() and seen == [False]


def small_signature(op="statistics", grad=False):
    fields = torch.rand(1, 1, 16, 16)
    return _backend.signature_of(_backend.call_key(op, fields, ((0, 0),), (2, 2), True, None, grad))


def test_auto_measures_once_per_signature(fresh_choices, monkeypatch):
    calls = []

    def measure(signature, names):
        calls.append((signature, tuple(names)))
        return {name: (0.5 if name == "fft" else 1.0) for name in names}

    monkeypatch.setattr(_backend, "measure", measure)
    x = torch.rand(1, 16, 16)
    assert _backend.choose(small_signature()) == "fft"
    ss.two_point(x, cutoff=2)
    ss.two_point(x, cutoff=2)
    assert len(calls) == 1 and set(calls[0][1]) == {"fft", "native"}
    ss.two_point(x.requires_grad_(), cutoff=2)  # forward + backward is another signature
    assert len(calls) == 2 and calls[1][0].grad


def test_measurement_times_real_calls(fresh_choices):
    signature = small_signature("distance:fields:l2:unweighted", grad=True)
    seconds = _backend.measure(signature, ["fft", "native"], rounds=2)
    assert set(seconds) == {"fft", "native"} and all(0 < s < 10 for s in seconds.values())


def test_cost_model_fallback_uses_measured_entries_only(fresh_choices, monkeypatch):
    monkeypatch.setenv(_backend.AUTOTUNE_ENV, "0")
    monkeypatch.setattr(_backend, "measure", lambda *a: pytest.fail("SPATIALSTATS_AUTOTUNE=0 must not measure"))
    signature = small_signature()
    assert _backend.choose(signature) == "native"  # the measured CPU entry: native for small windows
    monkeypatch.setitem(_backend.COST_MODEL, ("native", "cpu"), _backend.Cost(0.1, None))
    assert _backend.choose(signature) == "fft"  # an estimate never chooses


def test_hopeless_candidates_are_not_measured(fresh_choices, monkeypatch):
    monkeypatch.setattr(_backend, "measure", lambda *a: pytest.fail("a single candidate needs no measurement"))
    fields = torch.rand(1, 1, 256, 256)
    key = _backend.call_key("statistics", fields, ((0, 0),), (127, 127), True, None, False)
    assert _backend.choose(_backend.signature_of(key)) == "fft"


def test_autotune_file_is_written_and_read(fresh_choices, monkeypatch, tmp_path):
    path = tmp_path / "autotune.json"
    monkeypatch.setenv(_backend.AUTOTUNE_FILE_ENV, str(path))
    monkeypatch.setattr(_backend, "measure", lambda signature, names: {n: float(n == "fft") for n in names})
    signature = small_signature()
    assert _backend.choose(signature) == "native"
    content = json.loads(path.read_text())
    (key,) = content
    assert "spatialstats" in key and f"torch {torch.__version__}" in key and signature.device_name in key
    _backend.clear_caches()
    monkeypatch.setattr(_backend, "measure", lambda *a: pytest.fail("the file holds this choice"))
    assert _backend.choose(signature) == "native"


def test_concurrent_first_calls_measure_once(fresh_choices, monkeypatch):
    calls = []
    original = _backend.measure

    def measure(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_backend, "measure", measure)
    x = torch.rand(2, 16, 16)
    expected = ss.two_point(x.double(), cutoff=2, backend="reference").float()
    results = [None] * 4

    def run(index):
        results[index] = ss.two_point(x, cutoff=2)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    for result in results:
        torch.testing.assert_close(result, expected)


def test_choice_is_made_outside_the_compiled_graph(fresh_choices, monkeypatch):
    calls = []
    original = _backend.choose
    monkeypatch.setattr(_backend, "choose", lambda signature: calls.append(signature) or original(signature))
    compiled = torch.compile(lambda t: ss.two_point(t, cutoff=2), backend="aot_eager", fullgraph=True)
    x = torch.rand(2, 12, 12)
    torch.testing.assert_close(compiled(x), ss.two_point(x, cutoff=2))
    traced = len(calls)
    compiled(torch.rand(2, 12, 12))
    assert traced >= 1 and len(calls) == traced  # the compiled graph does not choose again


def test_loss_on_meta_tensors_reads_no_values(fresh_choices):
    """The loss path (checks, dispatch, fft) on meta tensors: any host read of a value (what would
    synchronise with a GPU) raises there."""
    pred = torch.empty(4, 1, 32, 32, device="meta", requires_grad=True)
    target = torch.empty(4, 1, 32, 32, device="meta")
    for cutoff in (4, None):
        loss = ss.TwoPointLoss(cutoff=cutoff, backend="fft")(pred, target)
        loss.backward()
        assert loss.device.type == "meta" and pred.grad.shape == pred.shape
    stats = ss.two_point(torch.empty(2, 16, 16, device="meta"), cutoff=3, backend="fft")
    assert stats.shape == (2, 7, 7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_loss_hot_path_does_not_synchronise(fresh_choices):
    pred = torch.rand(4, 1, 32, 32, device="cuda", requires_grad=True)
    target = torch.rand(4, 1, 32, 32, device="cuda")
    for backend in ("fft", "auto"):
        loss_fn = ss.TwoPointLoss(cutoff=4, backend=backend)
        loss_fn(pred, target).backward()  # the first call may measure
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss_fn(pred, target).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
