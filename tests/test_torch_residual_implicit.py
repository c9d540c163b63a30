"""The torch residual inverse is differentiated implicitly (implicit function theorem)."""

from __future__ import annotations

import numpy as np
import pytest

import lipflow as lf

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'lipflow[torch]'")

from lipflow.interop.torch_residual import TorchResidual  # noqa: E402


def _module(dim: int, hidden: tuple, seed: int, zero_bias: bool) -> TorchResidual:
    block = lf.Residual(dim, hidden=hidden, coeff=0.9, activation="tanh")
    params = block.init(seed)
    if zero_bias:
        params = {"weights": params["weights"], "biases": [np.zeros_like(b) for b in params["biases"]]}
    return TorchResidual(block, params, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_input_gradient_of_linear_zero_bias_inverse_is_exact(seed):
    module = _module(3, (), seed, zero_bias=True)
    w = module.used_weights()[0].detach()
    y = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)  # g(y) = 0: one iteration
    jac = torch.autograd.functional.jacobian(lambda v: module.inverse(v)[0], y)[:, 0, :]
    exact = torch.linalg.inv(torch.eye(3, dtype=torch.float64) + w.T)
    cond = 19.0  # (1 + c) / (1 - c)
    assert torch.max(torch.abs(jac - exact)) <= 16 * 4 * 2.0**-53 * cond * torch.linalg.matrix_norm(exact, 2)


def test_gradients_match_finite_differences_of_the_converged_inverse():
    module = _module(3, (5,), 4, zero_bias=False)
    y = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: module.inverse(v), (y,), eps=1e-6, atol=1e-7, rtol=1e-6)
    weight = module.weights[0]

    def of_weight(w):
        module.weights[0].data = w.detach()  # FD through the converged solve
        return module.inverse(y.detach())

    x = module.inverse(y.detach())
    loss = (x * torch.arange(6, dtype=torch.float64).reshape(2, 3)).sum()
    (analytic,) = torch.autograd.grad(loss, [weight])
    base = weight.detach().clone()
    h = 1e-6
    for index in [(0, 1), (2, 4)]:
        plus, minus = base.clone(), base.clone()
        plus[index] += h
        minus[index] -= h
        cot = torch.arange(6, dtype=torch.float64).reshape(2, 3)
        with torch.no_grad():
            fd = ((of_weight(plus) - of_weight(minus)) * cot).sum() / (2 * h)
        module.weights[0].data = base.clone()
        assert abs(float(analytic[index]) - float(fd)) <= 1e-7 * (1 + abs(float(fd)))
