"""`populace calibrate` on CSVs it has never seen: the JSON contract and clear errors."""

from __future__ import annotations

import json

import pytest

from populace.cli import main


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


ROWS = [1, 2, 3, 5, 8, 9, 12, 10, 7, 5]


@pytest.mark.slow
def test_calibrate_writes_report_and_prints_the_contract(tmp_path, capsys):
    rows = "\n".join(f"2021-02-{d:02d},{v}" for d, v in zip(range(1, 11), ROWS, strict=True))
    data = write(tmp_path, "day,count\n" + rows + "\n")
    out = tmp_path / "report"
    code = main(
        [
            "calibrate",
            "covid_nyc_seir",
            "--data",
            data,
            "--target",
            "count",
            "--date-column",
            "day",
            "--population",
            "200",
            "--set",
            "population=well_mixed",
            "--set",
            "initial=0.02",
            "--starts",
            "1",
            "--max-iterations",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"params", "nd", "converged", "loss", "method", "iterations", "hit_cap"} <= set(last)
    assert set(last["params"]) == {"beta", "gamma", "initial", "dispersion"}
    assert last["method"] == "adam" and last["hit_cap"] and not last["converged"]  # 3 epochs
    assert last["nd"] >= 0 and isinstance(last["params"]["initial"], float)  # shared
    assert (out / "params.csv").exists() and (out / "fit.png").exists()
    record = json.loads((out / "calibration.json").read_text())
    assert record["rows"] == 10 and record["convergence"][0]["hit_cap"] is True


@pytest.mark.slow
def test_calibrate_fits_several_series_and_seeds_into_intervals(tmp_path, capsys):
    lines = ["I,R"] + [
        f"{a},{b}" for a, b in zip(ROWS, [0, 1, 2, 4, 7, 11, 16, 22, 27, 31], strict=True)
    ]
    data = write(tmp_path, "\n".join(lines) + "\n")
    out = tmp_path / "report"
    args = [
        "calibrate",
        "sir",
        "--data",
        data,
        "--target",
        "I,R",
        "--metric",
        "I,R",
        "--population",
        "100",
        "--params",
        "beta,gamma",
        "--method",
        "nelder_mead",
        "--starts",
        "1",
        "--max-iterations",
        "12",
        "--seeds",
        "0,1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["method"] == "nelder_mead"
    record = json.loads((out / "calibration.json").read_text())
    assert set(record["nd_by_series"]) == {"I", "R"} and record["seeds"] == [0, 1]
    assert {r["param"] for r in record["intervals"]} == {"beta", "gamma", "dispersion"}
    assert (out / "param_intervals.csv").is_file()


@pytest.mark.parametrize(
    "text, args, message",
    [
        ("a,b\n1,2\n3,4\n5,6\n", ["--target", "c"], "no column 'c'"),
        ("a\n1\nx\n3\n", ["--target", "a"], "non-numeric value 'x'"),
        ("a\n1\n2\n", ["--target", "a"], "at least 3"),
        ("a\n1\n2\n3\n4\n5\n", ["--target", "a", "--params", "zeta"], "no parameter 'zeta'"),
        (
            "a\n1\n2\n3\n4\n5\n",
            ["--target", "a", "--multiplier", "nan"],
            "multiplier must be finite",
        ),
        (
            "a\n1\n2\n3\n4\n5\n",
            ["--target", "a", "--multiplier", "-3"],
            "multiplier must be finite",
        ),
        (
            "a\n1\n2\n3\n4\n5\n",
            ["--target", "a", "--method", "adam", "--lr", "nan"],
            "lr must be finite and > 0",
        ),
        (
            "d,a\n2021-01-01,1\n2021-01-01,2\n2021-01-02,3\n",
            ["--target", "a", "--date-column", "d"],
            "duplicated dates: 2021-01-01 (rows [1, 2])",
        ),
        ("a\n0\n0\n4\n0\n", ["--target", "a"], "1 nonzero row(s)"),  # beta, gamma, initial, r
        ("a,b\n1,2\n2,\n3,4\n", ["--target", "a,b", "--metric", "I,R"], "has no value (a gap)"),
        ("a,b\n1,2\n2,3\n3,4\n", ["--target", "a,b"], "give one metric per target"),
        (
            "d,a\n2021-01-01,1\n2021-01-02,2\n2021-01-03,3\n",
            ["--target", "a", "--date-column", "d", "--start", "2020-12-01"],
            "fit window 2020-12-01..2021-01-03 lies outside the data",
        ),
        ("a\n1\n2\n3\n4\n5\n", ["--target", "a", "--start", "2020-12-01"], "need --date-column"),
    ],
)
def test_calibrate_errors_are_clear(tmp_path, capsys, text, args, message):
    data = write(tmp_path, text)
    code = main(["calibrate", "sir", "--data", data, "--population", "50", *args])
    assert code == 2
    assert message in capsys.readouterr().err
