"""The batched FD pass (clean and perturbed forward in one call) gives the same output and
penalty as the two-pass fd_penalty, with the same random directions."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'lipflow[torch]'")

import lipflow as lf  # noqa: E402
from lipflow.interop.torch import fd_forward_and_penalty, fd_penalty, to_torch  # noqa: E402
from lipflow.interop.torch_glow import glow_flow  # noqa: E402

U64 = 2.0**-53


def _module():
    block = lf.Flow([lf.AffineCoupling(4), lf.Reverse(4), lf.AdditiveCoupling(4), lf.ActNorm(4, init_std=0.5)])
    return to_torch(block, block.init(0))


@pytest.mark.parametrize("samples", [None, 3])
@pytest.mark.parametrize(("forward_coeff", "inverse_coeff"), [(1e-4, 1e-4), (1.0, 0.0), (0.0, 1.0)])
def test_batched_pass_matches_two_passes(samples, forward_coeff: float, inverse_coeff: float) -> None:
    module = _module()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 4)))
    z_ref = module(x)
    ref = fd_penalty(module, module.inverse, x, z=z_ref, forward_coeff=forward_coeff, inverse_coeff=inverse_coeff,
                     generator=torch.Generator().manual_seed(7), samples=samples)
    z, got = fd_forward_and_penalty(module, module.inverse, x, forward_coeff=forward_coeff,
                                    inverse_coeff=inverse_coeff, generator=torch.Generator().manual_seed(7),
                                    samples=samples)
    assert z.shape == z_ref.shape
    # same arithmetic per sample: agreement to a few float64 roundings of the penalty's size
    assert torch.allclose(z, z_ref, rtol=64 * U64, atol=0)
    # z - shifted cancels about a factor 1/eps = 10: u |z| rounding differences are ~10 u of the
    # penalty; 1e3 u leaves a wide margin and still fails on any different direction or sample
    assert abs(float(got.detach()) - float(ref.detach())) <= 1e3 * U64 * abs(float(ref.detach()))


def test_batched_pass_is_differentiable_on_a_glow_flow() -> None:
    torch.manual_seed(0)
    flow, channels = glow_flow(3, levels=1, steps_per_level=2, hidden=8)
    flow = flow.double()
    images = torch.rand(4, 3, 4, 4, dtype=torch.float64)
    flow.data_init(images)
    z, penalty = fd_forward_and_penalty(flow, flow.inverse, images, generator=torch.Generator().manual_seed(1))
    assert z.shape[0] == 4 and z.shape[1] == channels
    grads = torch.autograd.grad(penalty + z.square().mean(), [p for p in flow.parameters() if p.requires_grad])
    assert all(torch.isfinite(g).all() for g in grads)


def test_batched_pass_rejects_bad_arguments() -> None:
    module = _module()
    x = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(lf.LipflowError, match="eps"):
        fd_forward_and_penalty(module, module.inverse, x, eps=0.0)
    with pytest.raises(lf.LipflowError, match="samples"):
        fd_forward_and_penalty(module, module.inverse, x, samples=0)
