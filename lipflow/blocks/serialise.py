"""Saving and loading flows: the architecture as JSON, the arrays as ``.npz`` (no pickle).

``save_flow("model", flow, params)`` writes ``model.json`` and ``model.npz``;
``load_flow("model")`` reads them back, refusing malformed or mismatched files with a clear
error. Arrays are read with ``allow_pickle=False``: a file someone handed you cannot run code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block, Params
from lipflow.blocks.conditioners import MLP, Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.residual import Residual
from lipflow.blocks.scales import Bounded, Exp, Identity, Sigmoid, SoftClamp
from lipflow.errors import LipflowError
from lipflow.io import atomic_path, atomic_write_text

__all__ = ["FORMAT_VERSION", "block_config", "block_from_config", "load_flow", "save_flow"]

FORMAT_VERSION = 1
_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        AdditiveCoupling,
        AffineCoupling,
        Residual,
        Permutation,
        InvertibleLinear,
        ActNorm,
        MLP,
        Constant,
        Sigmoid,
        Bounded,
        Exp,
        SoftClamp,
        Identity,
    )
}


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Flow):
            return {"type": "Flow", "blocks": [_encode(b) for b in value.blocks]}
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def block_config(block: Block) -> dict[str, Any]:
    """The architecture of ``block`` as a JSON-serialisable dict."""
    return _encode(block)


def _decode(config: Any, where: str) -> Any:
    if isinstance(config, list):
        return tuple(_decode(v, where) for v in config)
    if not isinstance(config, dict):
        return config
    kind = config.get("type")
    if kind == "Flow":
        return Flow([_decode(b, f"{where}.blocks[{i}]") for i, b in enumerate(config.get("blocks", []))])
    if kind not in _TYPES:
        raise LipflowError(f"{where}: unknown type {kind!r}; expected one of Flow, {', '.join(_TYPES)}")
    arguments = {key: _decode(value, f"{where}.{key}") for key, value in config.items() if key != "type"}
    try:
        return _TYPES[kind](**arguments)
    except TypeError as error:
        raise LipflowError(f"{where}: cannot build {kind} from {sorted(arguments)}: {error}") from None


def block_from_config(config: dict[str, Any]) -> Block:
    """Rebuild a block or flow from :func:`block_config`'s output."""
    block = _decode(config, "architecture")
    if not isinstance(block, Block):
        raise LipflowError("architecture: the top level must describe a block or a Flow")
    return block


def _flatten(tree: Any, prefix: str, out: dict[str, onp.ndarray]) -> Any:
    """Replace arrays by their npz keys; returns the skeleton (nested dicts / lists of keys)."""
    if isinstance(tree, dict):
        return {key: _flatten(value, f"{prefix}/{key}", out) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_flatten(value, f"{prefix}/{i}", out) for i, value in enumerate(tree)]
    array = onp.asarray(tree)
    if array.dtype.kind not in "fiu":
        raise LipflowError(f"parameter {prefix!r} has dtype {array.dtype}; lipflow parameters are real numbers")
    array = array.astype(onp.float64)
    if not onp.all(onp.isfinite(array)):
        raise LipflowError(f"parameter {prefix!r} has NaN/inf entries; a model with them cannot be saved")
    out[prefix] = array
    return {"array": prefix}


def _unflatten(skeleton: Any, arrays: Any) -> Any:
    if isinstance(skeleton, list):
        return [_unflatten(v, arrays) for v in skeleton]
    if isinstance(skeleton, dict) and set(skeleton) == {"array"}:
        key = skeleton["array"]
        if key not in arrays:
            raise LipflowError(f"parameter array {key!r} is missing from the .npz file")
        array = arrays[key]
        if array.dtype.kind not in "fiu":
            raise LipflowError(f"parameter array {key!r} has dtype {array.dtype}; lipflow parameters are real numbers")
        array = onp.asarray(array, dtype=onp.float64)
        if not onp.all(onp.isfinite(array)):
            bad = int(onp.sum(~onp.isfinite(array)))
            raise LipflowError(f"parameter array {key!r} has {bad} NaN/inf entries of {array.size}; the model is "
                               "corrupt or diverged in training")
        return array
    if isinstance(skeleton, dict):
        return {k: _unflatten(v, arrays) for k, v in skeleton.items()}
    raise LipflowError(f"malformed parameter layout entry {skeleton!r}")


def save_flow(path: str | os.PathLike[str], block: Block, params: Params) -> tuple[Path, Path]:
    """Write ``PATH.json`` (architecture + parameter layout) and ``PATH.npz`` (float64 arrays)."""
    base = Path(path).with_suffix("")
    arrays: dict[str, onp.ndarray] = {}
    layout = _flatten(params, "p", arrays)
    with atomic_path(base.with_suffix(".npz")) as temporary, open(temporary, "wb") as stream:
        onp.savez(stream, **arrays)
    document = {"format": "lipflow", "version": FORMAT_VERSION, "architecture": block_config(block), "params": layout}
    atomic_write_text(base.with_suffix(".json"), json.dumps(document, indent=2))
    return base.with_suffix(".json"), base.with_suffix(".npz")


def load_flow(path: str | os.PathLike[str]) -> tuple[Block, Params]:
    """Read a block or flow and its parameters written by :func:`save_flow`."""
    base = Path(path).with_suffix("")
    json_path, npz_path = base.with_suffix(".json"), base.with_suffix(".npz")
    for required in (json_path, npz_path):
        if not required.is_file():
            raise LipflowError(f"{required} does not exist; save_flow writes both {json_path.name} and {npz_path.name}")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LipflowError(f"{json_path} is not valid JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise LipflowError(f"{json_path} is not UTF-8 text (byte {error.start}); save_flow writes UTF-8 JSON: "
                           "restore the file or save the model again") from None
    if not isinstance(document, dict) or document.get("format") != "lipflow":
        raise LipflowError(f"{json_path} is not a lipflow model file (no 'format': 'lipflow')")
    if document.get("version") != FORMAT_VERSION:
        version = document.get("version")
        raise LipflowError(f"{json_path} has format version {version!r}; this lipflow reads {FORMAT_VERSION}")
    block = block_from_config(document.get("architecture"))
    try:
        with onp.load(npz_path, allow_pickle=False) as arrays:
            if not hasattr(arrays, "files"):
                raise LipflowError(f"{npz_path} holds a single array, not the .npz archive save_flow writes")
            params = _unflatten(document.get("params"), arrays)
    except LipflowError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        reason = "it is empty" if npz_path.stat().st_size == 0 else f"{type(error).__name__}: {error}"
        raise LipflowError(f"{npz_path} cannot be read without pickle or is not a complete .npz archive "
                           f"({reason}); if it was truncated, save the model again") from None
    mismatch = first_mismatch(block.init(0), params, "params")
    if mismatch:
        raise LipflowError(f"{npz_path} does not match the architecture in {json_path.name}: {mismatch}")
    return block, params


def first_mismatch(expected: Any, got: Any, where: str, names: dict[str, str] | None = None) -> str | None:
    """Where the structure or an array shape of ``got`` differs from ``expected``, or None.

    ``names`` labels paths (e.g. ``{"params/1": "block 1 (AffineCoupling(dim=2))"}``).
    """
    prefixes = sorted(names or (), key=len, reverse=True)
    owner = next((names[p] for p in prefixes if where == p or where.startswith(p + "/")), None) if names else None
    label = f"{where} of {owner}" if owner else where
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"{label} should have keys {sorted(expected)}"
        return next((m for k in expected if (m := first_mismatch(expected[k], got[k], f"{where}/{k}", names))), None)
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"{label} should be a list of {len(expected)} entries"
        pairs = zip(expected, got, strict=True)
        return next((m for i, (e, g) in enumerate(pairs)
                     if (m := first_mismatch(e, g, f"{where}/{i}", names))), None)
    if onp.shape(expected) != onp.shape(got):
        return f"{label} has shape {onp.shape(got)}, expected {onp.shape(expected)}"
    return None
