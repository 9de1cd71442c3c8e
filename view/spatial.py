"""Spatial layers: what of a model's state can be drawn as a picture, chosen by what it has.

Read from the state's field declarations (``tensor_field`` shapes and dtypes), its static
metadata and the model's data, never from the model's name:

- ``density``: agent positions (``pos`` or ``*_pos``, ``[B, N, 2]`` or 3-D, drawn from above)
  binned into a density image on the run's device — a million agents cost one ``bincount`` and
  a small copy, never a million points in the page;
- ``field``: a float ``[B, H, W]`` field (pheromone, trail), drawn with a colour scale;
- ``grid``: an integer or bool ``[B, H, W]`` grid of cell codes (Schelling, forest fire), or a
  ``[B, "C"]`` field with ``C = width * height`` cells (grass), one colour per code;
- ``cells``: agents on a grid by flat cell index (``*_cell`` ``[B, X]`` integer fields with a
  static ``width``), counted per cell (wolf-sheep, Boltzmann wealth);
- ``map``: per-agent shares by area (an ``area`` axis of the model data whose labels are area
  codes with polygons: NYC's MODZCTA shipped with populace, or a GeoDataFrame given), drawn
  with :func:`populace.populations.geography.choropleth`.

A layer reads one member (``member``) into a small host array; :func:`render` turns it into PNG
bytes (a colour lookup and PIL for images, matplotlib for maps).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from populace.engine import Model, State
from populace.engine.state import AGENT_AXIS

#: kinds of layer, in the order they are offered.
KINDS = ("density", "field", "grid", "cells", "map")
#: the symbol of a flat cell axis (``tensor_field("B", "C")``, C = width * height).
CELL_AXIS = "C"
#: largest side of a density image (bins per axis).
DENSITY_BINS = 256


@dataclasses.dataclass(frozen=True)
class Layer:
    """One drawable view of the state.

    Attributes:
        name: what the menu shows (``"pos (density)"``, ``"chemical"``, ``"I share by area"``).
        kind: one of :data:`KINDS`.
        read: ``(state, member) -> array`` on the host: ``[H, W]`` for images, ``[A]`` per area
            for maps.
        areas: the GeoDataFrame of a map layer (rows in the axis' label order).
    """

    name: str
    kind: str
    read: Callable[[State, int], np.ndarray]
    areas: Any = None


def _fields(state_cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(state_cls) if "shape" in f.metadata]


def _kind(f: dataclasses.Field) -> str:
    d = f.metadata["dtype"]
    if isinstance(d, torch.dtype):
        return "bool" if d == torch.bool else "float" if d.is_floating_point else "int"
    return d


def layers(model: Model, state: State, areas: Any = None) -> list[Layer]:
    """Every layer ``state`` offers, in :data:`KINDS` order.

    Args:
        model: the model (its data gives area codes for maps).
        state: a state of the model (its shapes and statics pick the extents).
        areas: a GeoDataFrame of the ``area`` axis' polygons (default: NYC's when the codes are
            MODZCTA codes).
    """
    found: dict[str, list[Layer]] = {k: [] for k in KINDS}
    statics = state.statics()
    for f in _fields(type(state)):
        shape, kind = f.metadata["shape"], _kind(f)
        value = getattr(state, f.name)
        if len(shape) == 3 and kind == "float" and shape[2] in (2, 3) and _is_position(f.name):
            found["density"].append(_density_layer(f.name, value, statics))
        elif len(shape) == 3 and all(isinstance(s, str) and s != AGENT_AXIS for s in shape[1:]):
            target = "field" if kind == "float" else "grid"
            found[target].append(Layer(f.name, target, _plane(f.name)))
        elif len(shape) == 2 and kind == "int" and (f.name == "cell" or f.name.endswith("_cell")):
            side = _grid_size(statics)
            if side is not None:
                found["cells"].append(_cells_layer(f.name, side, state))
        elif len(shape) == 2 and shape[1] == CELL_AXIS:
            side = _grid_size(statics)
            if side is not None and value.shape[1] == side[0] * side[1]:
                found["grid"].append(Layer(f.name, "grid", _flat_plane(f.name, side)))
    found["map"] = map_layers(model, state, areas)
    return [layer for k in KINDS for layer in found[k]]


def _is_position(name: str) -> bool:
    return name in ("pos", "position", "positions") or name.endswith("_pos")


def _grid_size(statics: dict[str, Any]) -> tuple[int, int] | None:
    """(height, width) of a flat-cell grid from the statics ``width`` (and ``height``)."""
    w = statics.get("width")
    if not isinstance(w, int) or w < 1:
        return None
    h = statics.get("height", w)
    return (h, w) if isinstance(h, int) and h >= 1 else None


def _plane(name: str) -> Callable[[State, int], np.ndarray]:
    def read(state: State, member: int) -> np.ndarray:
        return getattr(state, name)[member].detach().to("cpu", torch.float32).numpy()

    return read


def _flat_plane(name: str, side: tuple[int, int]) -> Callable[[State, int], np.ndarray]:
    def read(state: State, member: int) -> np.ndarray:
        flat = getattr(state, name)[member].detach().to("cpu", torch.float32)
        return flat.reshape(side).numpy()

    return read


def _alive(state: State, name: str) -> torch.Tensor | None:
    """The alive mask that goes with field ``name`` (``alive``, or ``sheep_alive`` for
    ``sheep_cell``), if the state has one of the same shape."""
    prefix = name.rsplit("_", 1)[0] if "_" in name else ""
    for candidate in (f"{prefix}_alive" if prefix else "", "alive"):
        mask = getattr(state, candidate, None) if candidate else None
        if isinstance(mask, torch.Tensor) and mask.shape == getattr(state, name).shape[:2]:
            return mask
    return None


def _cells_layer(name: str, side: tuple[int, int], state: State) -> Layer:
    h, w = side

    def read(state: State, member: int) -> np.ndarray:
        cell = getattr(state, name)[member]
        mask = _alive(state, name)
        if mask is not None:
            cell = cell[mask[member]]
        counts = torch.bincount(cell.clamp(0, h * w - 1), minlength=h * w)
        return counts.reshape(h, w).to("cpu", torch.float32).numpy()

    label = name.removesuffix("_cell") or name
    return Layer(f"{label} (per cell)", "cells", read)


def _density_layer(name: str, value: torch.Tensor, statics: dict[str, Any]) -> Layer:
    """Positions binned into at most DENSITY_BINS² cells over the box (static ``box``), the
    world of cells (static ``world``: cell centres at 0..world-1) or the positions' range."""
    n = value.shape[1]
    bins = int(min(DENSITY_BINS, max(32, 4 * math.isqrt(max(n, 1)))))
    box = statics.get("box")
    world = statics.get("world")
    if isinstance(box, tuple) and len(box) >= 2:
        extent = ((0.0, float(box[0])), (0.0, float(box[1])))
    elif isinstance(world, int) and world > 0:
        extent = ((-0.5, world - 0.5), (-0.5, world - 0.5))
        bins = min(world, DENSITY_BINS)  # one bin per cell where the world is small
    else:
        extent = None

    def read(state: State, member: int) -> np.ndarray:
        pos = getattr(state, name)[member, :, :2].detach()
        mask = _alive(state, name)
        if mask is not None:
            pos = pos[mask[member]]
        return density(pos, bins, extent)

    return Layer(f"{name} (density)", "density", read)


def density(
    pos: torch.Tensor, bins: int, extent: tuple[tuple[float, float], ...] | None = None
) -> np.ndarray:
    """``[bins, bins]`` counts of positions (rows: y upwards, columns: x), computed where the
    positions are; only the image is copied to the host.

    Args:
        pos: ``[N, 2]`` (x, y).
        extent: ((x0, x1), (y0, y1)); None: the positions' range.
    """
    if pos.numel() == 0:
        return np.zeros((bins, bins), dtype=np.float32)
    if extent is None:
        lo, hi = pos.min(dim=0).values, pos.max(dim=0).values
    else:
        lo = torch.tensor([extent[0][0], extent[1][0]], device=pos.device, dtype=pos.dtype)
        hi = torch.tensor([extent[0][1], extent[1][1]], device=pos.device, dtype=pos.dtype)
    span = torch.clamp(hi - lo, min=1e-12)
    cell = ((pos - lo) / span * bins).long().clamp(0, bins - 1)
    flat = cell[:, 1] * bins + cell[:, 0]
    counts = torch.bincount(flat, minlength=bins * bins)
    return counts.reshape(bins, bins).to("cpu", torch.float32).numpy()


# -- maps by area --------------------------------------------------------------------------------
#: compartment names by the number of compartments of a one-hot ``health`` field.
COMPARTMENTS = {3: ("S", "I", "R"), 4: ("S", "E", "I", "R")}


def nyc_areas(codes: tuple[str, ...]) -> Any:
    """NYC's MODZCTA polygons in ``codes`` order, or None when ``codes`` are not all MODZCTA
    codes (or the ``geo`` extra is missing)."""
    import warnings

    try:
        from populace.populations.geography import read_areas
        from populace.populations.nyc import DATA, read_areas_table
    except ImportError:  # pragma: no cover - without the geo extra
        return None
    known = set(read_areas_table()["code"].to_list())
    if not codes or not set(codes) <= known:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a scaled-down population may leave areas unused
            return read_areas(DATA / "modzcta.geojson", "MODZCTA", list(codes))
    except ImportError:  # pragma: no cover
        return None


def map_layers(model: Model, state: State, areas: Any = None) -> list[Layer]:
    """Shares of agents by area: each compartment of a one-hot ``health`` ``[B, C, N]`` and
    each bool or 0/1 ``[B, N]`` field, for models whose data has an ``area`` axis."""
    data = model.data
    if "area" not in data.axis_sizes() or "area" not in data:
        return []
    codes = tuple(str(c) for c in data.labels("area"))
    frame = areas if areas is not None else nyc_areas(codes)
    if frame is None:
        return []
    if len(frame) != len(codes):
        raise ValueError(f"map areas: {len(frame)} polygons for {len(codes)} area labels")
    area = data["area"]
    out = []
    fields = {f.name: f for f in _fields(type(state))}
    health = fields.get("health")
    if health is not None and health.metadata["shape"][1:] == ("C", "N"):
        names = COMPARTMENTS.get(state.health.shape[1])
        for c in range(state.health.shape[1]):
            label = names[c] if names else f"compartment {c}"
            read = _area_share("health", c, area, len(codes))
            out.append(Layer(f"{label} share by area", "map", read, frame))
    for name, f in fields.items():
        shape = f.metadata["shape"]
        if len(shape) == 2 and shape[1] == "N" and _kind(f) == "bool":
            read = _area_share(name, None, area, len(codes))
            out.append(Layer(f"{name} share by area", "map", read, frame))
    return out


def _area_share(name: str, index: int | None, area: torch.Tensor, size: int):
    on_device: dict[torch.device, torch.Tensor] = {}  # the codes, copied once per device

    def read(state: State, member: int) -> np.ndarray:
        values = getattr(state, name)[member]
        values = values[index] if index is not None else values
        codes = on_device.setdefault(values.device, area.to(values.device))
        total = torch.bincount(codes, weights=values.to(torch.float64), minlength=size)
        count = torch.bincount(codes, minlength=size).clamp(min=1)
        return (total / count).cpu().numpy()

    return read


# -- rendering ------------------------------------------------------------------------------------
#: colours of grid codes 0..9 (code 0, usually empty, is light grey).
GRID_COLOURS = np.array(
    [
        (235, 235, 235),
        (31, 119, 180),
        (214, 39, 40),
        (44, 160, 44),
        (255, 127, 14),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (23, 190, 207),
    ],
    dtype=np.uint8,
)


def render(layer: Layer, array: np.ndarray, size: int = 360) -> bytes:
    """PNG bytes of a layer's array: a square image ``size`` px wide (maps: a matplotlib
    choropleth)."""
    if layer.kind == "map":
        return _render_map(layer, array)
    if layer.kind == "grid":
        codes = np.clip(np.nan_to_num(array), 0, len(GRID_COLOURS) - 1).astype(np.int64)
        rgb = GRID_COLOURS[codes]
    else:
        rgb = _colour(np.log1p(array) if layer.kind in ("density", "cells") else array)
    return _png(rgb[::-1], size)  # row 0 is y = 0: drawn at the bottom


def _colour(values: np.ndarray, cmap: str = "magma") -> np.ndarray:
    from matplotlib import colormaps

    v = np.nan_to_num(values.astype(np.float64))
    lo, hi = float(v.min()), float(v.max())
    scaled = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def _png(rgb: np.ndarray, size: int) -> bytes:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb))
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _render_map(layer: Layer, values: np.ndarray) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from populace.populations.geography import choropleth

    fig = Figure(figsize=(4.2, 4.2), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    choropleth(layer.areas, values, ax=ax, label=layer.name, cmap="magma", vmin=0.0)
    ax.set_axis_off()
    ax.set_title(layer.name, fontsize=9)
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()
