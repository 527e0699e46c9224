"""Checks every CSV reader shares: the file's own field separator, and no row that pandas
would silently shift (a row wider than the header makes pandas take its leading fields as the
row index, moving every value one column over)."""

from __future__ import annotations

import csv

import pandas as pd

from pipelines.core.errors import DataError

# Field separators a data file may use: spreadsheets in most European locales export `;`
# with decimal commas, and tab-separated exports are common.
DELIMITERS = ",;\t|"


def sniff_delimiter(sample: str) -> str:
    """The field separator of a CSV guessed from its first lines; a comma when unsure."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def check_row_width(frame: pd.DataFrame, name: str, delimiter: str = ",", hint: str = "") -> None:
    """A DataError when some row of ``frame`` (read by ``pd.read_csv``) had more fields than
    its header."""
    if not isinstance(frame.index, pd.RangeIndex):
        raise DataError(
            f"rows of {name} have more fields than its header ({len(frame.columns)}, split "
            f"by {delimiter!r}){hint}"
        )
