"""The halo benchmark on a small NYC: area blocks never cut a household or a class (both are
formed within an area), cut fewer edges than a random split, and cut more as ranks grow."""

from __future__ import annotations

import pytest

from populace.benchmarks.distributed import halo_volumes


@pytest.fixture(scope="module")
def record():
    return halo_volumes(0.002, [2, 4, 8], members=3)


def test_area_blocks_keep_households_and_classes_whole(record):
    for row in record["rows"]:
        by_layer = row["areas"]["cut_fraction_by_layer"]
        assert by_layer["household"] == 0.0 and by_layer["school"] == 0.0
        assert by_layer["work"] > 0.0  # commuting crosses areas


def test_area_blocks_cut_less_than_a_random_split_and_more_with_more_ranks(record):
    rows = record["rows"]
    for row in rows:
        assert row["areas"]["cut_fraction"] < row["random"]["cut_fraction"]
        # a random split cuts about 1 - 1/W of the edges
        assert row["random"]["cut_fraction"] == pytest.approx(1 - 1 / row["ranks"], abs=0.02)
        assert (
            row["areas"]["bytes_per_step_total"] == 4 * 3 * row["areas"]["halo_mean"] * row["ranks"]
        )
    cuts = [row["areas"]["cut_fraction"] for row in rows]
    assert cuts == sorted(cuts)
