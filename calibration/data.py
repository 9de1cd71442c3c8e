"""Observed series: read one numeric column of a user's CSV, and the shipped NYC cases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import torch

DATA = Path(__file__).parent / "data"
NYC_CASES = DATA / "nyc" / "cases-by-day.csv"
NYC_BOROUGHS = ("BX", "BK", "MN", "QN", "SI")
#: rows of one calibration series (each is ``steps_per_row`` model steps per evaluation)
MAX_ROWS = 100_000


def read_series(
    path: str | Path, column: str, date_column: str | None = None, min_rows: int = 2
) -> tuple[torch.Tensor, list[str]]:
    """One column of a CSV as a float64 ``[T]`` tensor, plus row labels (dates or row numbers).

    Rows are sorted by ``date_column`` when given (ISO ``YYYY-MM-DD`` or ``MM/DD/YYYY``); the
    dates must then be distinct and evenly spaced (e.g. daily or weekly: each row is one data row
    of the calibration, ``steps_per_row`` model steps), so a gap cannot silently shift the series.

    Raises:
        ValueError: a missing file or column (listing the columns), a non-numeric, empty, NaN or
            negative value (naming the row), an unparseable date, a duplicated date or a gap
            between dates (naming the dates and rows), fewer than ``min_rows`` rows or more
            than ``MAX_ROWS``.
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
    if frame.height > MAX_ROWS:
        raise ValueError(
            f"{path}: {frame.height:,} data rows; a calibration series holds at most "
            f"{MAX_ROWS:,} (every evaluation simulates each row): aggregate or cut the data"
        )
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
        _check_spacing(path, date_column, [dates[i] for i in order], [i + 1 for i in order])
        values = [values[i] for i in order]
        labels = [dates[i].isoformat() for i in order]
    return torch.tensor(values, dtype=torch.float64), labels


def _check_spacing(path: Path, column: str, dates: list[dt.date], rows: list[int]) -> None:
    """Raise on duplicated ``dates`` (sorted) or on spacings other than the smallest one."""
    repeats: dict[dt.date, list[int]] = {}
    for a, b, row_a, row_b in zip(dates, dates[1:], rows, rows[1:], strict=False):
        if a == b:
            repeats.setdefault(a, [row_a]).append(row_b)
    if repeats:
        listed = "; ".join(f"{d.isoformat()} (rows {sorted(r)})" for d, r in repeats.items())
        raise ValueError(f"{path}: column {column!r} has duplicated dates: {listed}")
    gaps = [(b - a).days for a, b in zip(dates, dates[1:], strict=False)]
    if not gaps:
        return
    spacing = min(gaps)
    bad = [i for i, g in enumerate(gaps) if g != spacing]
    if bad:
        listed = "; ".join(
            f"{dates[i].isoformat()} (row {rows[i]}) to {dates[i + 1].isoformat()} "
            f"(row {rows[i + 1]}): {gaps[i]} days"
            for i in bad[:5]
        )
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(
            f"{path}: column {column!r} is not evenly spaced: rows are {spacing} day(s) apart "
            f"except {listed}{more}; add the missing dates (e.g. with 0 counts)"
        )


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
    if out.height != days or out["date"].n_unique() != days:
        raise ValueError(
            f"NYC cases: {out.height} rows ({out['date'].n_unique()} distinct dates) between "
            f"{start} and {end}, need {days}"
        )
    return out
