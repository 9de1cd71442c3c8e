"""Population folders: one rename swaps a whole population in; every damaged, truncated or
swapped file is refused naming it; writers that race or die leave no mixed folder."""

import json
import textwrap
import threading

import pytest
import torch

from populace.engine.storage import IntegrityError, OutputExistsError
from populace.populations import Population
from populace.populations.graphs import erdos_renyi

FILES = ("attributes.parquet", "tensors.safetensors", "meta.json", "manifest.json")


def population(seed: int, n: int = 400) -> Population:
    g = torch.Generator().manual_seed(seed)
    return Population(
        attributes={
            "age": torch.randint(0, 4, (n,), generator=g, dtype=torch.int8),
            "household": torch.randint(0, n // 3, (n,), generator=g, dtype=torch.int32),
        },
        codebook={"age": ("0-17", "18-34", "35-64", "65+")},
        layers={"community": erdos_renyi(n, 4.0, seed=seed)},
        home=torch.rand(n, 2, generator=g, dtype=torch.float64),
        meta={"seed": seed, "source": "test"},
    )


def same(a: Population, b: Population) -> bool:
    return (
        all(torch.equal(a.attributes[k], b.attributes[k]) for k in a.attributes)
        and torch.equal(a.home, b.home)
        and torch.equal(a.layers["community"].values(), b.layers["community"].values())
        and a.meta == b.meta
    )


def visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.fixture
def two(tmp_path):
    a, b = population(1), population(2)
    return a, a.save(tmp_path / "a"), b, b.save(tmp_path / "b")


def test_round_trip_with_manifest(two):
    a, folder, _, _ = two
    assert visible(folder) == sorted(FILES)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "population" and manifest["info"]["agents"] == 400
    assert manifest["info"]["edges"]["community"] == a.layers["community"].values().numel()
    assert same(Population.load(folder), a)


@pytest.mark.parametrize("name", FILES)
def test_every_truncation_is_refused_naming_the_file(two, name):
    _, folder, _, _ = two
    data = (folder / name).read_bytes()
    for cut in sorted({0, 1, 8, len(data) // 2, len(data) - 8, len(data) - 1}):
        (folder / name).write_bytes(data[:cut])
        with pytest.raises(IntegrityError, match=name):
            Population.load(folder)


@pytest.mark.parametrize("name", FILES)
def test_flipped_bytes_are_refused_naming_the_file(two, name):
    _, folder, _, _ = two
    data = (folder / name).read_bytes()
    step = max(1, len(data) // 60)
    for i in range(0, len(data), step):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        (folder / name).write_bytes(bytes(flipped))
        with pytest.raises(IntegrityError, match=name):
            Population.load(folder)


@pytest.mark.parametrize("name", ["attributes.parquet", "tensors.safetensors", "meta.json"])
def test_a_file_swapped_in_from_another_population_is_refused(two, name):
    _, folder_a, _, folder_b = two
    (folder_a / name).write_bytes((folder_b / name).read_bytes())
    with pytest.raises(IntegrityError, match=f"{name}.*another output"):
        Population.load(folder_a)


def test_a_foreign_manifest_or_an_old_folder_is_refused(two):
    _, folder_a, _, folder_b = two
    (folder_a / "manifest.json").write_bytes((folder_b / "manifest.json").read_bytes())
    with pytest.raises(IntegrityError, match="digest"):
        Population.load(folder_a)
    (folder_a / "manifest.json").unlink()  # what a format-1 folder looks like
    with pytest.raises(FileNotFoundError, match="no manifest.json; not a saved population"):
        Population.load(folder_a)


def test_a_non_empty_folder_is_refused_unless_overwrite(two, tmp_path):
    a, folder_a, b, _ = two
    with pytest.raises(OutputExistsError, match="not empty"):
        b.save(folder_a)
    assert same(Population.load(folder_a), a)
    b.save(folder_a, overwrite=True)
    assert same(Population.load(folder_a), b)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not a populace output"):
        b.save(mine, overwrite=True)
    assert visible(mine) == ["notes.txt"]


def test_a_failed_replacement_keeps_the_old_population(two):
    a, folder_a, b, _ = two
    broken = Population(b.attributes, b.codebook, b.layers, b.home, meta={"x": float("nan")})
    with pytest.raises(ValueError, match="meta.x is NaN"):
        broken.save(folder_a, overwrite=True)
    assert same(Population.load(folder_a), a)
    assert [p.name for p in folder_a.parent.iterdir() if p.name.startswith(".")] == []


def test_two_writers_one_wins_and_the_folder_is_whole(tmp_path):
    pops = [population(1), population(2)]
    target = tmp_path / "pop"
    outcomes = [None, None]

    def save(i):
        try:
            pops[i].save(target)
            outcomes[i] = "ok"
        except OutputExistsError as err:
            outcomes[i] = str(err)

    threads = [threading.Thread(target=save, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("ok") == 1, outcomes
    loser = outcomes[1 - outcomes.index("ok")]
    assert "another process" in loser or "not empty" in loser
    assert same(Population.load(target), pops[outcomes.index("ok")])


def test_a_killed_writer_never_leaves_a_mixed_population(tmp_path, sigkill_child):
    """SIGKILL a process replacing a population again and again: the folder always loads, and
    as one of the two populations whole (the old code moved file by file: mixed seeds)."""
    target = tmp_path / "pop"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
        from test_population_integrity import population
        pops = [population(1, 20000), population(2, 20000)]
        pops[0].save({str(target)!r})
        print("ready", flush=True)
        i = 1
        while True:
            pops[i % 2].save({str(target)!r}, overwrite=True)
            i += 1
        """
    )
    sigkill_child(script, after=2.0)
    back = Population.load(target)
    assert same(back, population(1, 20000)) or same(back, population(2, 20000))
    assert visible(tmp_path) == ["pop"]  # temporaries are hidden ...
    population(3).save(target, overwrite=True)  # ... and the next writer removes them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pop"]
