"""`populace calibrate` on CSVs it has never seen."""

from __future__ import annotations

import json

import pytest

from populace.cli import main


def write(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


def test_calibrate_writes_report_and_prints_json(tmp_path, capsys):
    rows = "\n".join(
        f"2021-02-{d:02d},{v}"
        for d, v in zip(range(1, 11), [1, 2, 3, 5, 8, 9, 12, 10, 7, 5], strict=True)
    )
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
            "initial=0.02",  # ~4 infected agents: at the default 0.001 none, and no gradient
            "--epochs",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"params", "loss", "nd"} and set(last["params"]) == {"beta", "initial"}
    assert last["nd"] >= 0
    assert (out / "params.csv").exists() and (out / "fit.png").exists()
    assert json.loads((out / "calibration.json").read_text())["rows"] == 10


@pytest.mark.parametrize(
    "text, args, message",
    [
        ("a,b\n1,2\n3,4\n5,6\n", ["--target", "c"], "no column 'c'"),
        ("a\n1\nx\n3\n", ["--target", "a"], "non-numeric value 'x'"),
        ("a\n1\n2\n", ["--target", "a"], "at least 3"),
        ("a\n1\n2\n3\n", ["--target", "a", "--params", "zeta"], "no parameter 'zeta'"),
        ("a\n1\n2\n3\n", ["--target", "a", "--multiplier", "nan"], "multiplier must be finite"),
        ("a\n1\n2\n3\n", ["--target", "a", "--multiplier", "-3"], "multiplier must be finite"),
        (
            "a\n1\n2\n3\n",
            ["--target", "a", "--method", "adam", "--lr", "nan"],
            "lr must be finite and > 0",
        ),
        (
            "d,a\n2021-01-01,1\n2021-01-01,2\n2021-01-02,3\n",
            ["--target", "a", "--date-column", "d"],
            "duplicated dates: 2021-01-01 (rows [1, 2])",
        ),
    ],
)
def test_calibrate_errors_are_clear(tmp_path, capsys, text, args, message):
    data = write(tmp_path, text)
    code = main(["calibrate", "sir", "--data", data, "--population", "50", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_calibrate_an_all_zero_target_fits_and_reports_no_nd(tmp_path, capsys):
    # ND = sum|pred - obs| / sum|obs| is undefined: the fit still runs, nd is JSON null
    data = write(tmp_path, "a\n0\n0\n0\n0\n")
    out = tmp_path / "report"
    args = ["calibrate", "sir", "--data", data, "--target", "a", "--population", "50"]
    assert main([*args, "--epochs", "6", "--out", str(out)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["nd"] is None and last["loss"] >= 0
    record = json.loads((out / "calibration.json").read_text())
    assert record["method"] == "nelder_mead" and record["nd"] is None
    # Nelder-Mead has no epochs: the record counts its simulator runs
    assert record["epochs"] is None and 2 <= record["evaluations"] <= 6
    assert (out / "errors.csv").read_text().splitlines()[1].startswith("I,fit,,0.0,")
