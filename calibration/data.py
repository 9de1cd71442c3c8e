"""Observed series: read one numeric column of a user's CSV, and the shipped NYC cases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import torch

DATA = Path(__file__).parent / "data"
NYC_CASES = DATA / "nyc" / "cases-by-day.csv"
NYC_BOROUGHS = ("BX", "BK", "MN", "QN", "SI")


def read_series(
    path: str | Path, column: str, date_column: str | None = None, min_rows: int = 2
) -> tuple[torch.Tensor, list[str]]:
    """One column of a CSV as a float64 ``[T]`` tensor, plus row labels (dates or row numbers).

    Rows are sorted by ``date_column`` when given (ISO ``YYYY-MM-DD`` or ``MM/DD/YYYY``).

    Raises:
        ValueError: a missing file or column (listing the columns), a non-numeric, empty, NaN or
            negative value (naming the row), an unparseable date, or fewer than ``min_rows`` rows.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist")
    try:
        frame = pl.read_csv(path, infer_schema_length=0)  # all text: we parse numbers ourselves
    except pl.exceptions.PolarsError as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from None
    for col, flag in ((column, "--target"), (date_column, "--date-column")):
        if col is not None and col not in frame.columns:
            raise ValueError(f"{path}: no column {col!r} ({flag}); columns: {frame.columns}")
    if frame.height < min_rows:
        raise ValueError(f"{path}: {frame.height} data row(s); at least {min_rows} are needed")
    values = []
    for row, text in enumerate(frame[column].to_list()):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(
                f"{path} row {row + 1}: column {column!r} has non-numeric value {text!r}"
            ) from None
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise ValueError(f"{path} row {row + 1}: column {column!r} has value {value}")
        values.append(value)
    labels = [str(i) for i in range(len(values))]
    if date_column is not None:
        dates = [_parse_date(path, row, t) for row, t in enumerate(frame[date_column].to_list())]
        order = sorted(range(len(values)), key=lambda i: dates[i])
        values = [values[i] for i in order]
        labels = [dates[i].isoformat() for i in order]
    return torch.tensor(values, dtype=torch.float64), labels


def _parse_date(path: Path, row: int, text: str | None) -> dt.date:
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return dt.datetime.strptime((text or "").strip(), fmt).date()
        except ValueError:
            pass
    raise ValueError(f"{path} row {row + 1}: date {text!r} is neither YYYY-MM-DD nor MM/DD/YYYY")


def nyc_cases(start: str = "2020-03-01", end: str = "2020-06-30") -> pl.DataFrame:
    """Daily confirmed cases per borough from ``start`` to ``end`` (inclusive, ISO dates).

    Returns:
        DataFrame ``date`` (pl.Date), ``BX``, ``BK``, ``MN``, ``QN``, ``SI`` (float64).
    """
    frame = pl.read_csv(NYC_CASES, infer_schema_length=0)
    frame = frame.select(
        pl.col("date_of_interest").str.strptime(pl.Date, "%m/%d/%Y").alias("date"),
        *[pl.col(f"{b}_CASE_COUNT").cast(pl.Float64).alias(b) for b in NYC_BOROUGHS],
    )
    lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    out = frame.filter((pl.col("date") >= lo) & (pl.col("date") <= hi)).sort("date")
    days = (hi - lo).days + 1
    if out.height != days:
        raise ValueError(f"NYC cases: {out.height} rows between {start} and {end}, need {days}")
    return out
