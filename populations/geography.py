"""Geography: area polygons, uniform home points inside them, centroids, distances, choropleths.

Polygons are read with geopandas (the ``geo`` extra) and cut once into triangles; sampling points
is then pure torch (pick a triangle by area, then a uniform point in it), so millions of points
take well under a second and run on the GPU too. Coordinates are WGS84 lon/lat degrees; triangle
areas are taken in degrees², whose ratio to true area varies by < 0.1 % across one NYC area
(cos latitude), so the points are uniform to that accuracy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

EARTH_RADIUS_KM = 6371.0088


def _geo_modules():
    try:
        import geopandas
        import shapely
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "populace geography needs the 'geo' extra: pip install 'populace[geo]'"
        ) from err
    return geopandas, shapely


def read_areas(path: str | Path, code_column: str, codes: list[str] | None = None) -> Any:
    """Area polygons as a GeoDataFrame indexed in ``codes`` order.

    Args:
        path: any file geopandas reads (GeoJSON here).
        code_column: property holding the area code.
        codes: keep exactly these areas, in this order (default: all, file order).

    Raises:
        ValueError naming the row for a missing code column, an empty or invalid geometry, a
        duplicated code, or a code in ``codes`` absent from the file.
    """
    geopandas, shapely = _geo_modules()
    frame = geopandas.read_file(path)
    if code_column not in frame.columns:
        raise ValueError(f"{path}: no column {code_column!r} (has {list(frame.columns)})")
    frame[code_column] = frame[code_column].astype(str)
    dup = frame[code_column].duplicated()
    if dup.any():
        row = int(dup.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path} row {row}: duplicate area code {frame[code_column].iloc[row]!r}")
    for row, geom in enumerate(frame.geometry):
        code = frame[code_column].iloc[row]
        if geom is None or geom.is_empty:
            raise ValueError(f"{path} row {row} (area {code}): empty geometry")
        if not geom.is_valid:
            raise ValueError(
                f"{path} row {row} (area {code}): invalid geometry "
                f"({shapely.is_valid_reason(geom)}); repair it, e.g. with shapely.make_valid"
            )
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"{path} row {row} (area {code}): {geom.geom_type}, not a polygon")
    frame = frame.set_index(code_column)
    if codes is not None:
        missing = [c for c in codes if c not in frame.index]
        if missing:
            raise ValueError(f"{path}: area code(s) {missing[:10]} not in the polygons")
        extra = [c for c in frame.index if c not in set(codes)]
        if extra:
            warnings.warn(f"{path}: ignoring polygons of unused area(s) {extra}", stacklevel=2)
        frame = frame.loc[list(codes)]
    return frame


@dataclass(frozen=True)
class Triangulation:
    """Polygons cut into triangles, for sampling uniform points.

    Attributes:
        vertices: [T, 3, 2] float64 lon/lat of each triangle's corners.
        owner: [T] int64 area index of each triangle (sorted ascending).
        cumulative: [T] float64 within-area cumulative area fraction (ends at 1 per area).
    """

    vertices: torch.Tensor
    owner: torch.Tensor
    cumulative: torch.Tensor

    def to(self, device: torch.device | str) -> Triangulation:
        return Triangulation(
            self.vertices.to(device), self.owner.to(device), self.cumulative.to(device)
        )


def triangulate(geometries: Any) -> Triangulation:
    """Constrained Delaunay triangulation of each (multi)polygon (holes respected).

    Args:
        geometries: sequence of A shapely polygons/multipolygons (e.g. a GeoSeries).
    """
    _, shapely = _geo_modules()
    import numpy as np

    tris, owners = [], []
    for a, geom in enumerate(geometries):
        parts = shapely.get_parts(shapely.constrained_delaunay_triangles(geom))
        coords = shapely.get_coordinates(parts).reshape(len(parts), 4, 2)[:, :3]
        tris.append(coords)
        owners.append(np.full(len(parts), a, dtype=np.int64))
    vertices = torch.from_numpy(np.concatenate(tris)).to(torch.float64)
    owner = torch.from_numpy(np.concatenate(owners))
    if owner.unique().numel() != len(geometries):
        raise ValueError("triangulate: some area produced no triangles (zero-area polygon?)")
    area = _triangle_area(vertices)
    cs = torch.cumsum(area, 0)
    n_areas = len(geometries)
    total = torch.zeros(n_areas, dtype=torch.float64).index_add_(0, owner, area)
    before = torch.cumsum(total, 0) - total
    cumulative = ((cs - before[owner]) / total[owner]).clamp(max=1.0)
    return Triangulation(vertices, owner, cumulative)


def centroids(frame: Any) -> torch.Tensor:
    """[A, 2] float64 lon/lat area centroids of the polygons (in row order).

    Computed in a local equal-area projection so that they are true area centroids.
    """
    import numpy as np

    projected = frame.geometry.to_crs(frame.geometry.estimate_utm_crs())
    points = projected.centroid.to_crs(frame.crs or "EPSG:4326")
    return torch.from_numpy(np.column_stack([points.x.to_numpy(), points.y.to_numpy()]))


def _triangle_area(v: torch.Tensor) -> torch.Tensor:
    ab, ac = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    return 0.5 * (ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]).abs()


def sample_points(
    tri: Triangulation, area: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniform random point inside the polygon of each agent's area.

    Args:
        tri: triangulation of the A areas (on the device of ``area``).
        area: [N] int64 area index of each agent.

    Returns:
        [N, 2] float64 lon/lat.
    """
    device = area.device
    area = area.to(torch.long)
    n = area.numel()
    # one monotone array for all areas: area a's cumulative fractions shifted by a, so a single
    # searchsorted picks the triangle of every agent in its own area
    flat = tri.owner.to(torch.float64) + tri.cumulative
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64, device=device)
    idx = torch.searchsorted(flat, area.to(torch.float64) + u[:, 0], right=True)
    idx = torch.minimum(idx, _last_of(tri.owner)[area])
    v = tri.vertices[idx]
    r1, r2 = u[:, 1:2], u[:, 2:3]
    flip = (r1 + r2) > 1  # reflect into the triangle: uniform on the parallelogram's half
    r1, r2 = torch.where(flip, 1 - r1, r1), torch.where(flip, 1 - r2, r2)
    return v[:, 0] + r1 * (v[:, 1] - v[:, 0]) + r2 * (v[:, 2] - v[:, 0])


def _last_of(owner: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(owner)
    return torch.cumsum(counts, 0) - 1


def haversine_km(lonlat_a: torch.Tensor, lonlat_b: torch.Tensor) -> torch.Tensor:
    """Great-circle distances [A, B] km between [A, 2] and [B, 2] lon/lat degrees."""
    a = torch.deg2rad(lonlat_a.to(torch.float64))[:, None, :]
    b = torch.deg2rad(lonlat_b.to(torch.float64))[None, :, :]
    dlon, dlat = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    h = (
        torch.sin(dlat / 2) ** 2
        + torch.cos(a[..., 1]) * torch.cos(b[..., 1]) * torch.sin(dlon / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(h.clamp(0, 1)))


def contains(frame: Any, area: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """[N] bool: does each point lie inside (or on) its area's polygon (shapely check)."""
    _, shapely = _geo_modules()
    import numpy as np

    geoms = np.asarray(frame.geometry.values)[area.cpu().numpy()]
    p = points.cpu().numpy()
    # covers() counts boundary points, which float rounding of a triangle vertex can produce
    inside = shapely.covers(geoms, shapely.points(p[:, 0], p[:, 1]))
    near = shapely.dwithin(geoms, shapely.points(p[:, 0], p[:, 1]), 1e-9)
    return torch.from_numpy(inside | near)


def choropleth(frame: Any, values: Any, *, ax: Any = None, label: str = "value", **kwargs: Any):
    """Plot a per-area metric on the area polygons; returns the matplotlib Axes.

    Args:
        frame: GeoDataFrame of A areas (e.g. ``population.areas``).
        values: [A] tensor/array/list in the frame's row order.
        kwargs: passed to ``GeoDataFrame.plot`` (cmap, vmin, ...).
    """
    import numpy as np

    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if v.shape != (len(frame),):
        raise ValueError(f"choropleth: {v.shape[0] if v.ndim else 0} values for {len(frame)} areas")
    if not np.isfinite(v).all():
        raise ValueError(
            f"choropleth: non-finite value at area {int(np.nonzero(~np.isfinite(v))[0][0])}"
        )
    plot = frame.assign(**{label: v})
    kwargs.setdefault("legend", True)
    return plot.plot(column=label, ax=ax, **kwargs)
