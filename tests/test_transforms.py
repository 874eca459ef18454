"""torch's transforms on every backend: torch.compile(fullgraph=True), torch.func (grad, vmap, jacrev),
gradients of every order, and autocast with mixed dtypes."""

import pytest
import torch

import spatialstats as ss

ALL = ["reference", "fft", "native", "triton", "conv"]
FUNC = ["reference", "fft", "native", "conv"]


def require(backend):
    reason = ss.available_backends("cpu")[backend]
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.parametrize("backend", ALL)
def test_compile_fullgraph_statistics_and_loss(backend):
    require(backend)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 7, 6, generator=gen)
    mask = torch.rand(7, 6, generator=gen) > 0.2

    def statistics(t):
        return ss.two_point(t, cutoff=(1, 2), periodic=False, mask=mask, backend=backend)

    compiled = torch.compile(statistics, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), statistics(x))
    loss_fn = ss.TwoPointLoss(cutoff=1, pairs="all", backend=backend)
    compiled_loss = torch.compile(loss_fn, backend="aot_eager", fullgraph=True)
    pred, target = torch.rand(2, 2, 7, 6, generator=gen), torch.rand(2, 2, 7, 6, generator=gen)
    leaves = [pred.clone().requires_grad_() for _ in range(2)]
    values = [compiled_loss(leaves[0], target), loss_fn(leaves[1], target)]
    for value in values:
        value.backward()
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(leaves[0].grad, leaves[1].grad)


@pytest.mark.parametrize("backend", FUNC)
@pytest.mark.parametrize("periodic", [True, False])
def test_func_grad_vmap_jacrev(backend, periodic):
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 6, 5, dtype=torch.float64, generator=gen)
    weight = torch.rand(3, 5, 7, dtype=torch.float64, generator=gen)

    def cross(a, b):
        return ss.two_point(a, b, cutoff=(2, 3), periodic=periodic, backend=backend)

    torch.testing.assert_close(torch.func.vmap(cross)(x, y), cross(x, y))
    torch.testing.assert_close(torch.func.vmap(cross, in_dims=(0, None))(x, y[0]), cross(x, y[:1].expand(3, 6, 5)))
    grads = torch.func.grad(lambda a, b: (cross(a, b) * weight).sum(), argnums=(0, 1))(x, y)
    leaves = (x.clone().requires_grad_(), y.clone().requires_grad_())
    expected = torch.autograd.grad((cross(*leaves) * weight).sum(), leaves)
    for grad, reference in zip(grads, expected):
        torch.testing.assert_close(grad, reference)
    jacobian = torch.func.jacrev(lambda a: ss.two_point(a, cutoff=1, periodic=periodic, backend=backend))(x[0])
    expected = torch.autograd.functional.jacobian(lambda a: ss.two_point(a, cutoff=1, periodic=periodic), x[0])
    torch.testing.assert_close(jacobian, expected)


@pytest.mark.parametrize("backend", FUNC)
def test_second_derivatives_on_every_backend(backend):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.rand(1, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(5, 4, generator=gen) > 0.2
    assert torch.autograd.gradgradcheck(
        lambda a, b: ss.two_point(a, b, cutoff=(2, 3), periodic=False, mask=mask, backend=backend), (x, y)
    )

    def objective(a):
        return ss.two_point(a, cutoff=1, backend=backend).square().sum()

    hessian = torch.func.jacrev(torch.func.jacrev(objective))(x.detach())
    expected = torch.autograd.functional.hessian(lambda a: ss.two_point(a, cutoff=1).square().sum(), x.detach())
    torch.testing.assert_close(hessian, expected)


@pytest.mark.parametrize("backend", FUNC)
def test_loss_gradient_of_gradient(backend):
    gen = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 1, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    target = torch.rand(2, 1, 6, 5, dtype=torch.float64, generator=gen)
    for cutoff in (1, None):
        assert torch.autograd.gradgradcheck(
            lambda p, cutoff=cutoff: ss.two_point_loss(p, target, cutoff=cutoff, backend=backend), (pred,)
        )


def test_autocast_with_mixed_prediction_and_target_dtypes():
    """A bfloat16 decoder output against a float32 target: the target follows the prediction's
    compute dtype (float32), and the loss equals the float32 loss of the same rounded prediction."""
    gen = torch.Generator().manual_seed(4)
    pred = torch.rand(2, 2, 12, 12, generator=gen).softmax(1).bfloat16().requires_grad_()
    target = (torch.rand(2, 2, 12, 12, generator=gen) > 0.5).float()
    expected = ss.two_point_loss(pred.detach().float(), target, cutoff=3, pairs="all")
    for device_dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=device_dtype):
            value = ss.two_point_loss(pred, target, cutoff=3, pairs="all")
            full = ss.two_point_loss(pred, target.double(), cutoff=None)
        assert value.dtype == torch.float32 and full.dtype == torch.float32
        torch.testing.assert_close(value, expected)
    value.backward()
    assert pred.grad.dtype == torch.bfloat16 and torch.isfinite(pred.grad).all()
