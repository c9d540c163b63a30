"""``lipflow audit FILE.py:FUNCTION --data ...``: files written, exit codes 0 / 1 (--tol) / 2 (mistakes)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch bridge needs PyTorch: pip install 'lipflow[torch]'")

from lipflow.cli.main import main  # noqa: E402
from lipflow.interop.torch_audit_report import FIGURES  # noqa: E402

MODEL_FILE = '''
import torch

class Scale(torch.nn.Module):
    """An invertible map whose inverse is computed at float16 (lossy)."""
    def __init__(self):
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.zeros(2))
    def forward(self, x):
        return x * torch.exp(self.log_scale)
    def inverse(self, z):
        return (z * torch.exp(-self.log_scale)).half().to(z.dtype)

def make_pair():
    m = Scale()
    return (m.forward, m.inverse)

def make_zuko():
    import zuko
    torch.manual_seed(0)
    return zuko.flows.MAF(features=2, transforms=2, hidden_features=(8, 8))

def broken():
    raise RuntimeError("no GPU here")
'''


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flows.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "data.npy", rng.standard_normal((24, 2)).astype(np.float32))
    return tmp_path


def test_audit_writes_report_and_gates_on_tol(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", "flows.py:make_pair", "--data", "data.npy", "--out", "loose", "--tol", "1e-2"]) == 0
    files = sorted(p.name for p in (workdir / "loose").iterdir())
    assert files == sorted(["report.md", "summary.json", *FIGURES])  # no temporary files left
    summary = json.loads((workdir / "loose" / "summary.json").read_text())
    assert summary["library"] == "callables" and summary["tolerance"]["exceeded"] is False
    assert len(summary["per_sample"]["cond"]) == summary["n"]
    assert "| reconstruction | measured |" in (workdir / "loose" / "report.md").read_text()
    # float16 rounding of the inverse (u = 2^-11) exceeds 1e-6 on unit-size data: exit 1
    assert main(["audit", "flows.py:make_pair", "--data", "data.npy", "--out", "tight", "--tol", "1e-6",
                 "--inputs", "data"]) == 1
    assert "tolerance 1e-06 exceeded" in capsys.readouterr().err


def test_audit_state_dict_of_a_library_model(workdir: Path) -> None:
    if importlib.util.find_spec("zuko") is None:
        pytest.skip("zuko is not installed; needs the interop extra: pip install 'lipflow[interop]'")
    import sys

    sys.path.insert(0, str(workdir))
    try:
        model = importlib.import_module("flows").make_zuko()
    finally:
        sys.path.pop(0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    torch.save(model.state_dict(), workdir / "model.pt")
    assert main(["audit", "flows.py:make_zuko", "--state-dict", "model.pt", "--data", "data.npy", "--out", "z",
                 "--inputs", "data,rings"]) == 0
    summary = json.loads((workdir / "z" / "summary.json").read_text())
    assert summary["library"] == "zuko" and set(summary["groups"]) == {"data", "rings"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.py:make_pair", "--data", "data.npy"], "does not exist"),
        (["flows.py", "--data", "data.npy"], "file.py:make_model"),
        (["flows.py:nothing", "--data", "data.npy"], "no function 'nothing'"),
        (["flows.py:broken", "--data", "data.npy"], "broken() raised RuntimeError"),
        (["flows.py:make_pair", "--data", "absent.npy"], "data file absent.npy does not exist"),
        (["flows.py:make_pair", "--data", "data.npy", "--inputs", "moons"], "unknown input kind"),
        (["flows.py:make_pair", "--data", "data.npy", "--state-dict", "model.pt"], "takes no --state-dict"),
        (["flows.py:Scale", "--data", "data.npy", "--state-dict", "data.npy"], "as a state dict of tensors"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(workdir: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                             message: str) -> None:
    assert main(["audit", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
