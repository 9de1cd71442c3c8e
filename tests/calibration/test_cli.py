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
    ],
)
def test_calibrate_errors_are_clear(tmp_path, capsys, text, args, message):
    data = write(tmp_path, text)
    code = main(["calibrate", "sir", "--data", data, "--population", "50", *args])
    assert code == 2
    assert message in capsys.readouterr().err
