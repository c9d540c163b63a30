"""lipflow.testing's assertions on torch models and tensors of every supported library."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch bridge needs PyTorch: pip install 'lipflow[torch]'")

from interop_models import INSTALL_HINT, MODELS, data  # noqa: E402

from lipflow.testing import assert_error_bound, assert_invertible, assert_logdet  # noqa: E402

torch.set_num_threads(1)


def build(library: str, name: str):
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed; {INSTALL_HINT}")
    return MODELS[library][name](0)


@pytest.mark.parametrize(("library", "name"), [("zuko", "maf"), ("nflows", "realnvp"), ("FrEIA", "glow"),
                                               ("normflows", "realnvp")])
def test_healthy_models_pass_one_line_checks(library: str, name: str) -> None:
    model = build(library, name)
    x = data(8)
    assert_error_bound(model, x)  # estimate-labelled: no proven Lipschitz bound
    assert_logdet(model, x)
    assert_invertible(model, x, lipschitz_inverse=100.0)
    assert_invertible(model, x.numpy(), lipschitz_inverse=100.0)  # a NumPy batch for a torch model


def test_algorithmic_inverse_errors_fail_with_their_numbers() -> None:
    for library, name in (("normflows", "residual"), ("FrEIA", "allinone")):
        model = build(library, name)
        with pytest.raises(AssertionError, match="algorithmic error") as info:
            assert_error_bound(model, data(8))
        assert "Newton reference" in str(info.value)
    from lipflow.interop.torch_testing import assert_error_bound as torch_bound

    torch_bound(build("normflows", "residual"), data(8), allow_algorithmic=True)


def test_invertible_failure_names_the_samples() -> None:
    def forward(x):
        return x * 1e4

    def inverse(z):
        return (z * 1e-4).to(torch.float16).to(z.dtype)  # a lossy inverse

    with pytest.raises(AssertionError, match="not invertible at float32 for 4 of 4"):
        assert_invertible(forward, torch.ones(4, 2) / 3, inverse=inverse, lipschitz_inverse=1e-4)


def test_wrong_logdet_fails() -> None:
    def forward(x):
        return 2 * x, torch.zeros(x.shape[0])  # the true log|det| is 2 log 2

    with pytest.raises(AssertionError, match="log-determinant wrong"):
        assert_logdet((forward, lambda z: z / 2), torch.ones(3, 2, dtype=torch.float64))
    ok = (lambda x: (2 * x, torch.full((x.shape[0],), 2 * np.log(2.0), dtype=x.dtype)), lambda z: z / 2)
    assert_logdet(ok, torch.ones(3, 2, dtype=torch.float64))
