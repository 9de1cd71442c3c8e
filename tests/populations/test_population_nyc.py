"""NYC builder: totals against the data, layers' structure, homes in polygons, determinism, I/O,
bad input, CLI."""

import json
import warnings

import polars as pl
import pytest
import torch

from populace.cli import main
from populace.populations import Population, nyc
from populace.populations.nyc import (
    AGE_BANDS,
    SCHOOL_BANDS,
    borough_marginals,
    harmonised_marginals,
    read_areas_table,
)

SCALE = 0.002


def build(scale, seed=7, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the known borough disagreement warning
        return nyc(scale=scale, seed=seed, **kw)


@pytest.fixture(scope="module")
def small():
    return build(SCALE)


@pytest.fixture(scope="module")
def data():
    areas = read_areas_table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return areas, harmonised_marginals(areas, borough_marginals())


def check_counts(pop, areas, age_marginal, scale, rel):
    pops = torch.tensor(areas["population"].to_list(), dtype=torch.float64) * scale
    assert pop.n == round(float(pops.sum()))  # total preserved exactly
    per_area = torch.bincount(pop.attributes["area"].long(), minlength=len(areas)).double()
    assert ((per_area - pops).abs() <= torch.maximum(0.01 * pops, torch.ones_like(pops))).all()
    got = pop.counts("borough", "age").rename({"agents": "got"})
    want = age_marginal.with_columns(pl.col("count") * scale)
    both = got.join(want, on=["borough", "age"])
    assert len(both) == 50
    err = (both["got"] - both["count"]).abs() / both["count"]
    assert err.max() < rel, both.with_columns(err.alias("err")).sort("err").tail(3)


def test_small_city_matches_data(small, data):
    areas, (_, age_m, _) = data
    assert small.codebook["age"] == AGE_BANDS
    # a sample of ~17 k agents: band counts of ~100-1000 carry rounding noise of a few agents
    check_counts(small, areas, age_m, SCALE, rel=0.1)


def test_borough_disagreement_is_reported():
    with pytest.warns(UserWarning, match=r"MN 1628706 vs 1611420 \(\+1.07 %\)"):
        harmonised_marginals(read_areas_table(), borough_marginals())


def test_layers_connect_the_right_agents(small):
    n = small.n
    a = small.attributes
    for name in ("household", "school", "work", "community"):
        layer = small.layers[name]
        crow, col = layer.crow_indices(), layer.col_indices()
        assert crow.dtype == col.dtype == torch.int64 and layer.shape == (n, n)
        torch.sparse_csr_tensor(crow, col, layer.values(), size=(n, n), check_invariants=True)
        rows = torch.repeat_interleave(torch.arange(n), crow.diff())
        assert (rows != col).all()
        key = rows * n + col  # symmetric: the transposed edge set is the same set
        assert torch.equal(torch.sort(key).values, torch.sort(col * n + rows).values)
        if name == "household":
            assert torch.equal(a["household"][rows], a["household"][col])
        if name == "school":
            assert torch.equal(a["area"][rows], a["area"][col])
            assert torch.equal(a["age"][rows], a["age"][col])
            pupils = torch.isin(a["age"][rows].long(), torch.tensor([1, 2]))
            assert pupils.all() and AGE_BANDS[1:3] == SCHOOL_BANDS
        if name == "work":
            assert ((a["age"][rows] >= 3) & (a["age"][rows] <= 7)).all()
    # households: every agent in one, each with an adult head where adults suffice
    hh = a["household"]
    adults = torch.zeros(int(hh.max()) + 1, dtype=torch.long).index_add_(
        0, hh, (a["age"] >= 3).long()
    )
    assert float((adults >= 1).double().mean()) > 0.99


def test_homes_inside_their_polygons(small):
    from populace.populations.geography import contains

    idx = torch.randperm(small.n, generator=torch.Generator().manual_seed(0))[:2000]
    area = small.attributes["area"].long()[idx]
    assert contains(small.areas, area, small.home[idx]).all()


def test_same_seed_same_population_other_seed_differs(small):
    again = build(SCALE)
    for k, v in small.attributes.items():
        assert torch.equal(v, again.attributes[k]), k
    assert torch.equal(small.home, again.home)
    for k, layer in small.layers.items():
        assert torch.equal(layer.col_indices(), again.layers[k].col_indices()), k
        assert torch.equal(layer.crow_indices(), again.layers[k].crow_indices()), k
    other = build(SCALE, seed=8, layers=(), homes=False)
    assert not torch.equal(other.attributes["age"], small.attributes["age"])


def test_save_load_round_trip(small, tmp_path):
    small.save(tmp_path / "pop")
    back = Population.load(tmp_path / "pop")
    assert back.codebook == small.codebook and back.meta == small.meta
    for k, v in small.attributes.items():
        assert back.attributes[k].dtype == v.dtype and torch.equal(back.attributes[k], v)
    assert torch.equal(back.home, small.home)
    for k, layer in small.layers.items():
        other = back.layers[k]
        assert torch.equal(other.crow_indices(), layer.crow_indices())
        assert torch.equal(other.col_indices(), layer.col_indices())
        assert torch.equal(other.values(), layer.values())
    assert back.table().equals(small.table())


def test_a_failed_save_writes_nothing(small, tmp_path):
    import dataclasses

    broken = dataclasses.replace(small, meta={"not json": object()})  # fails at meta.json
    with pytest.raises(TypeError):
        broken.save(tmp_path / "pop")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one is left


def test_load_rejects_non_population(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved population"):
        Population.load(tmp_path)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.drop("POP_DENOMINATOR"), "missing column"),
        (lambda t: t.with_columns(pl.lit("Atlantis").alias("BOROUGH_GROUP")), "row 0.*Atlantis"),
        (lambda t: t.with_columns(pl.lit("-5").alias("POP_DENOMINATOR")), "row 0.*negative"),
        (lambda t: t.with_columns(pl.lit("many").alias("POP_DENOMINATOR")), "row 0.*'many'"),
        (lambda t: pl.concat([t, t.head(1)]), "row 177: duplicate area code '10001'"),
    ],
)
def test_bad_area_table_names_the_row(tmp_path, edit, match):
    from populace.populations.nyc import DATA

    table = pl.read_csv(DATA / "data-by-modzcta.csv", infer_schema_length=0)
    edit(table).write_csv(tmp_path / "areas.csv")
    with pytest.raises(ValueError, match=match):
        read_areas_table(tmp_path / "areas.csv")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown layer"):
        nyc(scale=0.001, layers=("school", "church"))
    with pytest.raises(ValueError, match="scale"):
        nyc(scale=0)


def test_cli_population_nyc(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["population", "nyc", "--scale", "0.001", "--no-homes", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    record = json.loads(out.strip().splitlines()[-1])
    assert record["agents"] == 8332 and set(record["edges"]) == {
        "household",
        "school",
        "work",
        "community",
    }
    assert "BK" in out and "75+" in out
    assert Population.load(tmp_path).n == 8332


@pytest.mark.slow
def test_full_city(data):
    areas, (_, age_m, _) = data
    pop = build(1.0, layers=())
    check_counts(pop, areas, age_m, 1.0, rel=0.01)
    assert abs(pop.n - float(areas["population"].sum())) <= 0.001 * pop.n
    from populace.populations.geography import contains

    idx = torch.randperm(pop.n, generator=torch.Generator().manual_seed(0))[:5000]
    assert contains(pop.areas, pop.attributes["area"].long()[idx], pop.home[idx]).all()
