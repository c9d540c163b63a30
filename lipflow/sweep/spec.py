"""Sweep specifications: which grid of cells to measure, validated before any work starts.

A spec is a TOML file (or the same keys given as CLI flags)::

    name = "coupling-depth"
    metrics = ["recon_error", "sigma_min", "cond"]

    [axes]
    block = ["additive", "affine"]
    precision = ["float16", "float32", "float64"]
    depth = "1:30"
    seed = [0, 1]

Every axis value list is crossed with the others; each combination is a *cell*. Unknown keys,
bad values and impossible combinations raise :class:`~lipflow.errors.LipflowError` naming the
key and the allowed values.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lipflow.errors import LipflowError
from lipflow.precision import PRECISION_NAMES, precision

__all__ = [
    "AXES",
    "BLOCKS",
    "CONDITIONERS",
    "INPUT_SETS",
    "SCALES",
    "SETTINGS",
    "Cell",
    "SweepSpec",
    "auto_reference",
    "load_spec",
    "parse_depths",
    "spec_from_mapping",
    "spec_to_toml",
]

BLOCKS = ("additive", "affine", "residual")
CONDITIONERS = ("mlp", "toy")
SCALES = ("sigmoid", "exp", "softclamp", "bounded")
INPUT_SETS = ("ones", "normal", "uniform", "wide")
ACTIVATIONS = ("tanh", "relu", "elu", "lipswish", "swish", "sigmoid", "softplus")
RESIDUAL_ACTIVATIONS = ("lipswish", "elu", "tanh")

#: axis name -> default values, in grid order (depth varies fastest)
AXES: dict[str, tuple[Any, ...]] = {
    "block": ("additive", "affine"),
    "conditioner": ("mlp",),
    "scale": ("sigmoid",),
    "inputs": ("normal",),
    "seed": (0,),
    "precision": ("float16", "float32", "float64"),
    "depth": (1, 2, 4, 8, 16),
}

#: top-level key -> default value
SETTINGS: dict[str, Any] = {
    "name": "sweep",
    "metrics": ("recon_error", "recon_error_median", "nonfinite", "forward_error", "sigma_min", "sigma_max", "cond"),
    "reference": "auto",
    "dim": 2,
    "samples": 8,
    "hidden": (16,),
    "activation": "tanh",
    "coeff": 0.9,
}

MAX_DEPTH = 10_000
MAX_SAMPLES = 100_000


def auto_reference(max_depth: int) -> str:
    """The automatic mpmath reference: max(50, max_depth + 40) decimal digits.

    The Figure 1 affine inverse amplifies rounding by 10 per layer, so a reference with
    ``max_depth`` digits plus 40 keeps its own round-trip error below 1e-40 there; for other
    flows it is a default, not a guarantee (give ``reference = "mpNN"`` to choose).
    """
    return f"mp{max(50, max_depth + 40)}"


@dataclass(frozen=True)
class Cell:
    """One point of the grid: every axis at one value."""

    block: str
    conditioner: str
    scale: str
    inputs: str
    seed: int
    precision: str
    depth: int

    @functools.cached_property
    def key(self) -> str:
        """A stable identifier (hash of the cell's values), used as its file name."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def chain(self) -> tuple[Any, ...]:
        """The values that define the network and its inputs (all but precision and depth)."""
        return (self.block, self.conditioner, self.scale, self.inputs, self.seed)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: axis values, model settings and metrics (see the module docstring)."""

    name: str
    axes: Mapping[str, tuple[Any, ...]]
    metrics: tuple[str, ...]
    reference: str
    dim: int
    samples: int
    hidden: tuple[int, ...]
    activation: str
    coeff: float
    cells: tuple[Cell, ...] = field(default=(), repr=False, compare=False)

    def to_mapping(self) -> dict[str, Any]:
        """The spec as plain TOML-ready data (the reference resolved, axes as lists)."""
        return {
            "name": self.name,
            "metrics": list(self.metrics),
            "reference": self.reference,
            "dim": self.dim,
            "samples": self.samples,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "coeff": self.coeff,
            "axes": {axis: list(values) for axis, values in self.axes.items()},
        }


# ---- validation -------------------------------------------------------------------------------
def _allowed(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _as_list(key: str, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise LipflowError(f"axes.{key} is empty; give at least one value")
        return list(value)
    return [value]


def parse_depths(value: Any) -> list[int]:
    """Depths from a list of ints, ``"a:b"`` / ``"a:b:step"`` (inclusive) or {start, stop, step}."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"start", "stop", "step"}
        if unknown or "stop" not in value:
            raise LipflowError(
                f"axes.depth table must have keys start, stop and optionally step (inclusive range), "
                f"got {sorted(value)}; e.g. depth = {{ start = 1, stop = 50 }}"
            )
        parts = [value.get("start", 1), value["stop"], value.get("step", 1)]
        return _range("axes.depth", parts)
    if isinstance(value, str):
        try:
            parts = [int(p) for p in value.split(":")]
        except ValueError:
            parts = []
        if len(parts) not in (2, 3):
            raise LipflowError(f"axes.depth {value!r} must look like '1:50' or '1:50:2' (inclusive), or a list")
        return _range("axes.depth", parts + [1] * (3 - len(parts)))
    depths = []
    for item in _as_list("depth", value):
        if isinstance(item, str) and ":" in item:
            depths.extend(parse_depths(item))
            continue
        if isinstance(item, bool) or not isinstance(item, int):
            try:
                item = int(item) if isinstance(item, str) else item
            except ValueError:
                pass
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_DEPTH:
            raise LipflowError(f"axes.depth values must be integers in 1..{MAX_DEPTH}, got {item!r}")
        depths.append(item)
    return depths


def _range(key: str, parts: list[Any]) -> list[int]:
    start, stop, step = parts
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parts) or step < 1:
        raise LipflowError(f"{key} range needs integer start, stop and step >= 1, got {parts}")
    if not 1 <= start <= stop <= MAX_DEPTH:
        raise LipflowError(f"{key} range must satisfy 1 <= start <= stop <= {MAX_DEPTH}, got {start}..{stop}")
    return list(range(start, stop + 1, step))


def _choices(key: str, values: list[Any], allowed: tuple[str, ...]) -> list[str]:
    for value in values:
        if value not in allowed:
            raise LipflowError(f"{key} value {value!r} is not allowed; allowed values: {_allowed(allowed)}")
    return values


def _precisions(values: list[Any]) -> list[str]:
    names = []
    for value in values:
        try:
            names.append(precision(value).name)
        except LipflowError:
            raise LipflowError(
                f"axes.precision value {value!r} is not allowed; allowed values: {', '.join(PRECISION_NAMES)} "
                "(mpNN = mpmath with NN decimal digits, e.g. 'mp50')"
            ) from None
    return names


def _seeds(values: list[Any]) -> list[int]:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise LipflowError(f"axes.seed values must be non-negative integers, got {value!r}")
    return values


def _positive_int(key: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise LipflowError(f"{key} must be an integer in 1..{maximum}, got {value!r}")
    return value


def _unique(values: list[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def spec_from_mapping(data: Mapping[str, Any], *, source: str = "spec") -> SweepSpec:
    """Validate ``data`` (parsed TOML) into a :class:`SweepSpec`; errors name key and allowed values."""
    unknown = set(data) - set(SETTINGS) - {"axes"}
    if unknown:
        raise LipflowError(
            f"{source}: unknown key {sorted(unknown)[0]!r}; allowed top-level keys: "
            f"{', '.join([*SETTINGS, 'axes'])}"
        )
    raw_axes = data.get("axes", {})
    if not isinstance(raw_axes, Mapping):
        raise LipflowError(f"{source}: 'axes' must be a table, e.g. [axes] followed by block = [\"affine\"]")
    unknown = set(raw_axes) - set(AXES)
    if unknown:
        raise LipflowError(
            f"{source}: unknown axis {sorted(unknown)[0]!r}; allowed axes: {', '.join(AXES)}"
        )
    axes = {key: raw_axes.get(key, list(default)) for key, default in AXES.items()}
    axes["block"] = _choices("axes.block", _as_list("block", axes["block"]), BLOCKS)
    axes["conditioner"] = _choices("axes.conditioner", _as_list("conditioner", axes["conditioner"]), CONDITIONERS)
    axes["scale"] = _choices("axes.scale", _as_list("scale", axes["scale"]), SCALES)
    axes["inputs"] = _choices("axes.inputs", _as_list("inputs", axes["inputs"]), INPUT_SETS)
    axes["seed"] = _seeds(_as_list("seed", axes["seed"]))
    axes["precision"] = _precisions(_as_list("precision", axes["precision"]))
    axes["depth"] = parse_depths(axes["depth"])
    clean_axes = {key: _unique(values) for key, values in axes.items()}

    settings = {key: data.get(key, default) for key, default in SETTINGS.items()}
    name = settings["name"]
    if not isinstance(name, str) or not name.strip():
        raise LipflowError(f"{source}: name must be a non-empty string, got {name!r}")
    from lipflow.sweep.cells import available_metrics

    metrics = _as_list("metrics", settings["metrics"])
    _choices("metrics", metrics, available_metrics())
    dim = _positive_int("dim", settings["dim"], 1000)
    samples = _positive_int("samples", settings["samples"], MAX_SAMPLES)
    hidden = _as_list("hidden", settings["hidden"])
    for width in hidden:
        _positive_int("hidden (each width)", width, 100_000)
    activation = settings["activation"]
    _choices("activation", [activation], ACTIVATIONS)
    coeff = settings["coeff"]
    if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not 0 < coeff < 1:
        raise LipflowError(f"coeff (residual spectral coefficient) must be a number in (0, 1), got {coeff!r}")
    reference = settings["reference"]
    if reference == "auto":
        reference = auto_reference(max(clean_axes["depth"]))
    else:
        try:
            context = precision(reference)
        except LipflowError:
            context = None
        if context is None or not context.is_arbitrary:
            raise LipflowError(f"reference must be 'auto' or an mpmath precision such as 'mp60', got {reference!r}")
        reference = context.name

    cells = _cells(clean_axes, dim=dim, activation=activation)
    return SweepSpec(
        name=name.strip(),
        axes=clean_axes,
        metrics=_unique(metrics),
        reference=reference,
        dim=dim,
        samples=samples,
        hidden=tuple(hidden),
        activation=activation,
        coeff=float(coeff),
        cells=cells,
    )


def _cells(axes: Mapping[str, tuple[Any, ...]], *, dim: int, activation: str) -> tuple[Cell, ...]:
    """The grid in axis order, with axes that do not apply to a block collapsed.

    The scale only applies to affine blocks with an MLP conditioner (the toy conditioner fixes
    g = 0.1 through the identity scale); other cells record ``"-"``.
    """
    if "toy" in axes["conditioner"]:
        if "residual" in axes["block"]:
            raise LipflowError(
                "axes.conditioner 'toy' (the Figure 1 constants) has no residual version; allowed "
                "conditioners for block 'residual': 'mlp' (drop 'residual' or 'toy' from the axes)"
            )
        if dim != 2:
            raise LipflowError(f"axes.conditioner 'toy' is the 2-D Figure 1 block; it needs dim = 2, got dim = {dim}")
    if "residual" in axes["block"] and activation not in RESIDUAL_ACTIVATIONS:
        raise LipflowError(
            f"activation {activation!r} is not 1-Lipschitz and smooth, so block 'residual' cannot use it; "
            f"allowed with residual blocks: {_allowed(RESIDUAL_ACTIVATIONS)}"
        )
    if any(c == "mlp" for c in axes["conditioner"]) and dim < 2 and any(b != "residual" for b in axes["block"]):
        raise LipflowError("coupling blocks need dim >= 2 (one part to condition on, one to transform)")
    cells = []
    for values in itertools.product(*axes.values()):
        cell = dict(zip(axes, values, strict=True))
        if cell["block"] == "residual":
            cell["conditioner"] = "-"
        if cell["block"] != "affine":
            cell["scale"] = "-"
        elif cell["conditioner"] == "toy":
            cell["scale"] = "identity"
        cells.append(Cell(**cell))
    return _unique(cells)


# ---- files ------------------------------------------------------------------------------------
def load_spec(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Read and validate a TOML spec; ``overrides`` (from CLI flags) replace its keys."""
    path = Path(path)
    if path.is_dir():
        raise LipflowError(f"spec file {str(path)!r} is a folder; give a TOML file (see examples/sweep_spec.toml), "
                           "or continue a sweep folder with --resume DIR")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LipflowError(f"spec file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as error:
        raise LipflowError(f"spec file {str(path)!r} is not UTF-8 text (byte {error.start}); a spec is a TOML text "
                           "file") from None
    except OSError as error:
        raise LipflowError(f"cannot read spec file {str(path)!r}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise LipflowError(f"spec file {str(path)!r} is not valid TOML: {error}") from None
    if not data:
        raise LipflowError(f"spec file {str(path)!r} is empty; give at least one key (e.g. [axes] with "
                           "precision = [\"float16\", \"float32\"]) or run `lipflow sweep --out DIR` with flags only")
    return spec_from_mapping(merge_overrides(data, overrides or {}), source=str(path))


def merge_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``overrides`` applied; axis names go into the ``axes`` table."""
    merged = {key: value for key, value in data.items() if key != "axes"}
    axes = dict(data.get("axes", {})) if isinstance(data.get("axes", {}), Mapping) else data.get("axes")
    for key, value in overrides.items():
        if key in AXES:
            axes[key] = value
        else:
            merged[key] = value
    merged["axes"] = axes
    return merged


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def spec_to_toml(spec: SweepSpec) -> str:
    """The spec as TOML text that :func:`load_spec` reads back to an equal spec."""
    data = spec.to_mapping()
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if key != "axes"]
    lines += ["", "[axes]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in data["axes"].items()]
    return "\n".join(lines) + "\n"
