"""`read_series`: dated rows must be distinct and evenly spaced; the shipped NYC file is."""

from __future__ import annotations

import pytest

from populace.calibration.data import NYC_CASES, nyc_cases, read_series


def write(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_duplicated_dates_are_refused_naming_them_and_their_rows(tmp_path):
    path = write(tmp_path, "d,a\n2021-01-02,1\n2021-01-01,2\n2021-01-02,3\n2021-01-03,4\n")
    with pytest.raises(ValueError, match=r"duplicated dates: 2021-01-02 \(rows \[1, 3\]\)"):
        read_series(path, "a", "d")


def test_a_gap_in_daily_dates_is_refused_naming_it(tmp_path):
    path = write(tmp_path, "d,a\n2021-01-01,1\n2021-01-02,2\n2021-01-04,3\n2021-01-05,4\n")
    with pytest.raises(ValueError, match=r"2021-01-02 \(row 2\) to 2021-01-04 \(row 3\): 2 days"):
        read_series(path, "a", "d")


def test_evenly_spaced_dates_load_sorted(tmp_path):
    weekly = write(tmp_path, "d,a\n01/15/2021,3\n01/01/2021,1\n01/08/2021,2\n")
    values, labels = read_series(weekly, "a", "d")
    assert values.tolist() == [1.0, 2.0, 3.0]
    assert labels == ["2021-01-01", "2021-01-08", "2021-01-15"]


def test_the_shipped_nyc_cases_load_as_a_daily_series():
    values, labels = read_series(NYC_CASES, "BX_CASE_COUNT", "date_of_interest")
    assert labels[0] == "2020-02-29" and len(values) == len(labels) > 2000
    march = nyc_cases("2020-03-01", "2020-03-31")
    assert march.height == 31 and march["date"].n_unique() == 31
