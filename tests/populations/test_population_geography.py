"""Uniform points inside polygons (holes, multipolygons), distances, choropleth."""

import geopandas as gpd
import pytest
import shapely
import torch

from populace.populations.geography import (
    choropleth,
    contains,
    haversine_km,
    sample_points,
    triangulate,
)


@pytest.fixture(scope="module")
def frame():
    square_with_hole = shapely.Polygon(
        [(0, 0), (4, 0), (4, 4), (0, 4)], holes=[[(1, 1), (3, 1), (3, 3), (1, 3)]]
    )
    l_shape = shapely.Polygon([(10, 0), (12, 0), (12, 1), (11, 1), (11, 3), (10, 3)])
    two_squares = shapely.MultiPolygon([shapely.box(20, 0, 21, 1), shapely.box(22, 0, 25, 1)])
    return gpd.GeoDataFrame(geometry=[square_with_hole, l_shape, two_squares])


def test_points_lie_inside_their_polygon(frame):
    tri = triangulate(frame.geometry.values)
    area = torch.arange(3).repeat_interleave(2000)
    pts = sample_points(tri, area, torch.Generator().manual_seed(0))
    assert pts.shape == (6000, 2) and pts.dtype == torch.float64
    assert contains(frame, area, pts).all()


def test_points_are_uniform_by_area(frame):
    tri = triangulate(frame.geometry.values)
    pts = sample_points(tri, torch.full((40000,), 2), torch.Generator().manual_seed(1))
    # the multipolygon's parts have areas 1 and 3: a quarter of the points in the first
    share = float((pts[:, 0] < 21.5).double().mean())
    assert share == pytest.approx(0.25, abs=0.01)
    # the ring around the hole: mean of x is the centre by symmetry
    ring = sample_points(tri, torch.zeros(40000, dtype=torch.long), torch.Generator())
    assert float(ring[:, 0].mean()) == pytest.approx(2.0, abs=0.03)


def test_haversine_one_degree_of_latitude():
    a = torch.tensor([[-74.0, 40.0]], dtype=torch.float64)
    b = torch.tensor([[-74.0, 41.0], [-74.0, 40.0]], dtype=torch.float64)
    d = haversine_km(a, b)
    assert d.shape == (1, 2)
    assert float(d[0, 0]) == pytest.approx(6371.0088 * torch.pi / 180, rel=1e-9)
    assert float(d[0, 1]) == 0


def test_choropleth_checks_length(frame):
    import matplotlib

    matplotlib.use("Agg")
    ax = choropleth(frame, torch.tensor([1.0, 2.0, 3.0]))
    assert ax is not None
    with pytest.raises(ValueError, match="2 values for 3 areas"):
        choropleth(frame, [1.0, 2.0])


def test_read_areas_names_invalid_geometry_and_unknown_codes(tmp_path):
    from populace.populations.geography import read_areas

    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    good = shapely.box(2, 0, 3, 1)
    path = tmp_path / "areas.geojson"
    gpd.GeoDataFrame({"code": ["A", "B"]}, geometry=[good, bowtie], crs="EPSG:4326").to_file(path)
    with pytest.raises(ValueError, match=r"row 1 \(area B\): invalid geometry \(Self-intersection"):
        read_areas(path, "code")
    gpd.GeoDataFrame({"code": ["A"]}, geometry=[good], crs="EPSG:4326").to_file(path)
    with pytest.raises(ValueError, match=r"area code\(s\) \['Z'\] not in the polygons"):
        read_areas(path, "code", ["A", "Z"])
    with pytest.raises(ValueError, match="no column 'zip'"):
        read_areas(path, "zip")


def test_nyc_polygon_centroids_near_data_centroids():
    from populace.populations.geography import centroids, read_areas
    from populace.populations.nyc import DATA, read_areas_table

    table = read_areas_table()
    frame = read_areas(DATA / "modzcta.geojson", "MODZCTA", table["code"].to_list())
    got = centroids(frame)
    want = torch.tensor(table.select("lon", "lat").to_numpy())
    # the data's lat/lon are label points, not exact centroids: agree within ~2 km
    assert (haversine_km(got, want).diagonal() < 2.5).float().mean() > 0.95
