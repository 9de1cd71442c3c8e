"""New York City: a synthetic population of its 177 modified ZIP code areas (MODZCTA).

Data (shipped in ``populations/data/nyc``, NYC DOHMH COVID-19 Data, see its README):

- ``data-by-modzcta.csv``: area codes, borough, centroid, ``POP_DENOMINATOR`` (≈ 8.33 M);
- ``group-cases-by-boro.csv``: per borough, case counts and rates per 100,000 by age band and
  sex; population of a band = count / rate × 100,000;
- ``modzcta.geojson``: the area polygons, simplified (see the data README).

The borough × age and borough × sex populations derived from rates disagree with the sum of the
area populations of the same borough (Manhattan by about 1 %); the area populations are kept as
authoritative and the derived borough marginals are rescaled to them (a warning states each
disagreement). IPF fits area × age × sex with the borough as a structural dimension.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import torch

from populace.populations.contacts import chunk_groups, clique_layer, layer_stats
from populace.populations.graphs import csr_from_edges
from populace.populations.households import NYC_HOUSEHOLD_SIZE_PROBS, form_households
from populace.populations.population import Population
from populace.populations.synthesis import MarginalError, agents_from_table, fit_joint, integerise

DATA = Path(__file__).parent / "data" / "nyc"

BOROUGHS = ("BX", "BK", "MN", "QN", "SI")
BOROUGH_NAMES = {
    "Bronx": "BX",
    "Brooklyn": "BK",
    "Manhattan": "MN",
    "Queens": "QN",
    "Staten Island": "SI",
}
AGE_BANDS = ("0-4", "5-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75+")
SEXES = ("Female", "Male")
SCHOOL_BANDS = ("5-12", "13-17")
WORKING_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64")
ADULT_BANDS = AGE_BANDS[3:]
LAYERS = ("household", "school", "work", "community")

AREA_COLUMNS = ("MODIFIED_ZCTA", "BOROUGH_GROUP", "lat", "lon", "POP_DENOMINATOR")


def read_areas_table(path: str | Path = DATA / "data-by-modzcta.csv") -> pl.DataFrame:
    """Area table: ``code`` (str), ``borough`` (BX..SI), ``lon``, ``lat``, ``population``.

    Raises ValueError naming the row for missing columns, unknown boroughs, duplicated codes, and
    missing, non-numeric, NaN or negative populations/coordinates.
    """
    frame = pl.read_csv(path, infer_schema_length=0)  # all text: we check numbers ourselves
    missing = [c for c in AREA_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {frame.columns}")
    out = {"code": [], "borough": [], "lon": [], "lat": [], "population": []}
    for row, rec in enumerate(frame.select(AREA_COLUMNS).iter_rows(named=True)):
        code = (rec["MODIFIED_ZCTA"] or "").strip()
        if not code:
            raise ValueError(f"{path} row {row}: empty MODIFIED_ZCTA")
        if rec["BOROUGH_GROUP"] not in BOROUGH_NAMES:
            raise ValueError(
                f"{path} row {row} (area {code}): unknown borough {rec['BOROUGH_GROUP']!r}; "
                f"known: {list(BOROUGH_NAMES)}"
            )
        nums = {}
        for col, key in (("lon", "lon"), ("lat", "lat"), ("POP_DENOMINATOR", "population")):
            try:
                value = float(rec[col])
            except (TypeError, ValueError):
                raise ValueError(f"{path} row {row} (area {code}): {col} {rec[col]!r}") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{path} row {row} (area {code}): {col} is {value}")
            nums[key] = value
        if nums["population"] < 0:
            raise ValueError(f"{path} row {row} (area {code}): negative POP_DENOMINATOR")
        out["code"].append(code)
        out["borough"].append(BOROUGH_NAMES[rec["BOROUGH_GROUP"]])
        for key, value in nums.items():
            out[key].append(value)
    table = pl.DataFrame(out)
    dup = ~table["code"].is_first_distinct()
    if dup.any():
        row = int(dup.arg_true()[0])
        raise ValueError(f"{path} row {row}: duplicate area code {table['code'][row]!r}")
    return table


def borough_marginals(path: str | Path = DATA / "group-cases-by-boro.csv") -> pl.DataFrame:
    """Population per borough × (age band | sex), derived as count / rate × 100,000.

    Returns:
        DataFrame (group ∈ {"age", "sex"}, subgroup, borough, population).
    """
    frame = pl.read_csv(path, infer_schema_length=0)
    for col in ("group", "subgroup"):
        if col not in frame.columns:
            raise ValueError(f"{path}: missing column {col!r}")
    rows = []
    wanted = {"Age": ("age", AGE_BANDS), "Sex": ("sex", SEXES)}
    for group, (kind, labels) in wanted.items():
        part = frame.filter(pl.col("group") == group)
        found = part["subgroup"].to_list()
        if sorted(found) != sorted(labels):
            raise ValueError(f"{path}: {group} subgroups {found}, expected {list(labels)}")
        for b in BOROUGHS:
            for col in (f"{b}_CASE_COUNT", f"{b}_CASE_RATE"):
                if col not in frame.columns:
                    raise ValueError(f"{path}: missing column {col!r}")
            for rec in part.iter_rows(named=True):
                try:
                    count, rate = float(rec[f"{b}_CASE_COUNT"]), float(rec[f"{b}_CASE_RATE"])
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{path}: {group} {rec['subgroup']} {b}: non-numeric count/rate "
                        f"{rec[f'{b}_CASE_COUNT']!r}/{rec[f'{b}_CASE_RATE']!r}"
                    ) from None
                if not (count >= 0 and rate > 0):
                    raise ValueError(
                        f"{path}: {group} {rec['subgroup']} {b}: count {count}, rate {rate}"
                    )
                rows.append((kind, rec["subgroup"], b, count / rate * 100_000))
    return pl.DataFrame(rows, schema=["group", "subgroup", "borough", "population"], orient="row")


def harmonised_marginals(
    areas: pl.DataFrame, boroughs: pl.DataFrame, warn: bool = True, stacklevel: int = 3
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(area, borough × age, borough × sex) marginals whose borough totals agree.

    The derived borough marginals are rescaled to the sum of the area populations of their
    borough; each disagreement is reported in one warning.
    """
    area_totals = areas.group_by("borough").agg(pl.col("population").sum().alias("areas"))
    notes = []
    out = []
    for kind, col in (("age", "age"), ("sex", "sex")):
        part = boroughs.filter(pl.col("group") == kind)
        derived = part.group_by("borough").agg(pl.col("population").sum().alias("derived"))
        both = derived.join(area_totals, on="borough", how="full", coalesce=True)
        if both.null_count().sum_horizontal().item():
            raise MarginalError(f"boroughs of areas and {kind} marginal differ: {both}")
        for rec in both.sort("borough").iter_rows(named=True):
            diff = rec["derived"] / rec["areas"] - 1
            if kind == "age" and abs(diff) > 1e-6:
                notes.append(
                    f"{rec['borough']} {rec['derived']:.0f} vs {rec['areas']:.0f} "
                    f"({100 * diff:+.2f} %)"
                )
        scaled = part.join(both, on="borough").select(
            "borough",
            pl.col("subgroup").alias(col),
            (pl.col("population") * pl.col("areas") / pl.col("derived")).alias("count"),
        )
        out.append(scaled)
    if notes and warn:
        warnings.warn(
            "NYC borough populations derived from age-band rates disagree with the summed "
            f"area POP_DENOMINATOR: {'; '.join(notes)}; rescaled to the area totals",
            stacklevel=stacklevel,
        )
    area_marginal = areas.select(pl.col("code").alias("area"), pl.col("population").alias("count"))
    return area_marginal, out[0], out[1]


@functools.lru_cache(maxsize=1)
def _fitted_joint() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(area table, area × borough × age × sex IPF joint) of the shipped files: the part of
    :func:`nyc` that does not depend on scale or seed, fitted once per process."""
    areas = read_areas_table()
    codes = areas["code"].to_list()
    area_m, age_m, sex_m = harmonised_marginals(areas, borough_marginals(), stacklevel=4)
    categories = {"area": codes, "borough": BOROUGHS, "age": AGE_BANDS, "sex": SEXES}
    prior = (
        areas.select(pl.col("code").alias("area"), "borough", pl.lit(1.0).alias("count"))
        .join(pl.DataFrame({"age": list(AGE_BANDS)}), how="cross")
        .join(pl.DataFrame({"sex": list(SEXES)}), how="cross")
    )
    return areas, fit_joint([area_m, age_m, sex_m], categories, prior=prior)


def nyc(
    scale: float = 1.0,
    seed: int = 0,
    *,
    layers: Sequence[str] = LAYERS,
    homes: bool = True,
    household_size_probs: Sequence[float] = NYC_HOUSEHOLD_SIZE_PROBS,
    class_size: int = 20,
    work_team_sizes: tuple[int, int] = (3, 12),
    employment_rate: float = 0.7,
    community_contacts: int = 2,
    gravity_exponent: float = 2.0,
    min_distance_km: float = 1.0,
    device: str | torch.device = "cpu",
) -> Population:
    """Synthetic population of New York City.

    Args:
        scale: fraction of the 8.33 M residents (0.01 → ~83 k agents); area totals are
            ``scale × POP_DENOMINATOR`` rounded so the city total is preserved exactly.
        seed: same seed, same population (on the same device).
        layers: which contact layers to build, from ``LAYERS``.
        homes: sample home points inside the area polygons (needs the ``geo`` extra).
        household_size_probs: P(household of s persons), s = 1.. (assumption, see households.py).
        class_size: pupils per class; classes are formed per area and school band (5-12, 13-17)
            and are cliques.
        work_team_sizes: (min, max) size of a work team (uniform), a clique.
        employment_rate: probability that an agent aged 18-64 works (assumption).
        community_contacts: contacts each agent initiates outside home/school/work; the layer is
            symmetric, so the mean community degree is about twice this.
        gravity_exponent, min_distance_km: a destination area b is chosen from area a with
            probability ∝ pop_b / max(d_ab, min_distance_km)^gravity_exponent (d: centroid
            distance); used for workplaces and community contacts.
        device: where tensors are built (the generator lives there; results differ by device).

    Returns:
        Population with coded attributes ``area``, ``borough``, ``age``, ``sex``, plus
        ``household`` ids, ``home`` lon/lat when ``homes``, and the requested layers (all edge
        weights 1.0: models weight layers themselves).
    """
    t0 = time.perf_counter()
    if not (0 < scale <= 1):
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    unknown = [x for x in layers if x not in LAYERS]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; known: {list(LAYERS)}")
    if not (0 <= employment_rate <= 1):
        raise ValueError(f"employment_rate must be in [0, 1], got {employment_rate}")
    lo, hi = work_team_sizes
    if not (1 <= lo <= hi):
        raise ValueError(f"work_team_sizes must be 1 <= min <= max, got {work_team_sizes}")
    if class_size < 1 or community_contacts < 0:
        raise ValueError("class_size must be >= 1 and community_contacts >= 0")
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed)

    areas, joint = _fitted_joint()
    codes = areas["code"].to_list()
    categories = {"area": codes, "borough": BOROUGHS, "age": AGE_BANDS, "sex": SEXES}

    # area totals first (deterministic, city total preserved), then cells within each area
    area_pop = torch.tensor(areas["population"].to_list(), dtype=torch.float64) * scale
    area_n = integerise(area_pop)
    cell_area = torch.tensor(joint["area"].replace_strict(codes, list(range(len(codes)))).to_list())
    counts = integerise(
        torch.tensor(joint["count"].to_list(), dtype=torch.float64),
        cell_area,
        area_n,
        generator=cpu_gen,
    )
    attributes, codebook = agents_from_table(
        joint.with_columns(pl.Series("count", counts.tolist(), dtype=pl.Int64)), categories
    )
    attributes = {k: v.to(device) for k, v in attributes.items()}
    area = attributes["area"].to(torch.long)
    age = attributes["age"].to(torch.long)
    n = area.numel()
    timings = {"synthesis": time.perf_counter() - t0}

    adult = age >= AGE_BANDS.index(ADULT_BANDS[0])
    household = form_households(area, adult, tuple(household_size_probs), generator=gen)
    attributes["household"] = household
    built: dict[str, torch.Tensor] = {}
    if "household" in layers:
        built["household"] = clique_layer(household)
    timings["household"] = time.perf_counter() - t0 - sum(timings.values())

    if "school" in layers:
        band = age - AGE_BANDS.index(SCHOOL_BANDS[0])
        pupil = (band >= 0) & (band < len(SCHOOL_BANDS))
        key = torch.where(pupil, area * len(SCHOOL_BANDS) + band, torch.full_like(area, -1))
        sizes = torch.tensor([class_size], device=device)
        built["school"] = clique_layer(chunk_groups(key, sizes, generator=gen))
    timings["school"] = time.perf_counter() - t0 - sum(timings.values())

    n_areas = len(codes)
    area_count = torch.bincount(area, minlength=n_areas)
    area_start = torch.cumsum(area_count, 0) - area_count
    centroids = torch.tensor(areas.select("lon", "lat").to_numpy(), dtype=torch.float64)
    gravity = _gravity_cdf(centroids, area_count, gravity_exponent, min_distance_km).to(device)

    if "work" in layers:
        working = (age >= AGE_BANDS.index(WORKING_BANDS[0])) & (
            age <= AGE_BANDS.index(WORKING_BANDS[-1])
        )
        works = working & (torch.rand(n, generator=gen, device=device) < employment_rate)
        dest = _destination(gravity, area, gen)
        key = torch.where(works, dest, torch.full_like(dest, -1))
        sizes = torch.randint(lo, hi + 1, (4096,), generator=gen, device=device)
        built["work"] = clique_layer(chunk_groups(key, sizes, generator=gen))
    timings["work"] = time.perf_counter() - t0 - sum(timings.values())

    if "community" in layers and community_contacts > 0:
        source = area.repeat(community_contacts)
        dest = _destination(gravity, source, gen)
        u = torch.rand(source.numel(), generator=gen, device=device, dtype=torch.float64)
        other = area_start[dest] + (u * area_count[dest]).long()
        other = torch.minimum(other, area_start[dest] + area_count[dest] - 1)
        me = torch.arange(n, device=device).repeat(community_contacts)
        built["community"] = csr_from_edges(me, other, n)
    timings["community"] = time.perf_counter() - t0 - sum(timings.values())

    home = None
    frame = None
    if homes:
        from populace.populations.geography import read_areas, sample_points, triangulate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the file holds exactly the shipped areas
            frame = read_areas(DATA / "modzcta.geojson", "MODZCTA", codes)
        tri = triangulate(frame.geometry.values).to(device)
        home = sample_points(tri, area, generator=gen)
    timings["homes"] = time.perf_counter() - t0 - sum(timings.values())

    meta = {
        "source": "NYC DOHMH COVID-19 Data (nychealth/coronavirus-data)",
        "region": "New York City, 177 MODZCTA",
        "scale": scale,
        "seed": seed,
        "device": str(device),
        "assumptions": {
            "household_size_probs": list(household_size_probs),
            "class_size": class_size,
            "work_team_sizes": [lo, hi],
            "employment_rate": employment_rate,
            "community_contacts": community_contacts,
            "gravity_exponent": gravity_exponent,
            "min_distance_km": min_distance_km,
        },
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    population = Population(
        attributes=attributes,
        codebook=codebook,
        layers=built,
        home=home,
        meta=meta,
        areas=frame,
    )
    population.meta["seconds"]["total"] = round(time.perf_counter() - t0, 3)
    return population


def _gravity_cdf(
    centroids: torch.Tensor, weight: torch.Tensor, exponent: float, min_km: float
) -> torch.Tensor:
    """[A, A] row-wise CDF of P(b | a) ∝ weight_b / max(d_ab, min_km)^exponent."""
    from populace.populations.geography import haversine_km

    d = haversine_km(centroids, centroids).clamp_min(min_km)
    p = weight.to(torch.float64).cpu()[None, :] / d**exponent
    cdf = torch.cumsum(p, 1)
    cdf = cdf / cdf[:, -1:]
    cdf[:, -1] = 1.0
    return cdf


def _destination(cdf: torch.Tensor, source: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Sample a destination area for each source area (rows of ``cdf``), vectorised."""
    n_areas = cdf.shape[0]
    # rows shifted by their index form one monotone array: one searchsorted for all sources
    flat = (cdf + torch.arange(n_areas, device=cdf.device, dtype=cdf.dtype)[:, None]).reshape(-1)
    u = torch.rand(source.numel(), generator=gen, device=source.device, dtype=torch.float64)
    idx = torch.searchsorted(flat, source.to(torch.float64) + u, right=True)
    return (idx - source * n_areas).clamp(0, n_areas - 1)


def summary(population: Population) -> dict[str, pl.DataFrame]:
    """Tables: agents per borough, per age band, edges per layer, bytes per agent."""
    layers = []
    for name, layer in population.layers.items():
        stats = layer_stats(layer)
        layers.append((name, stats["edges"], stats["mean_degree"], stats["bytes"]))
    n = population.n
    return {
        "borough": population.counts("borough"),
        "age": population.counts("age"),
        "layers": pl.DataFrame(
            layers, schema=["layer", "edges", "mean_degree", "bytes"], orient="row"
        ),
        "totals": pl.DataFrame(
            {
                "agents": [n],
                "households": [int(population.attributes["household"].max()) + 1 if n else 0],
                "bytes_per_agent": [population.nbytes() / max(n, 1)],
                "seconds": [population.meta.get("seconds", {}).get("total", float("nan"))],
            }
        ),
    }
