"""Writing the spreadsheets people download (the four lists, the monthly table, the roster) so
that what users typed is read back as what they typed, and never run.

A cell of text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a
formula to Excel and to LibreOffice (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``): in CSV such a
cell is written with a leading apostrophe, which the spreadsheet shows as text; in XLSX every
text cell is stored as a string (openpyxl would store ``=...`` as a formula), so the file holds no
formula at all. Characters XLSX cannot hold (control characters other than tab and newline)
are dropped rather than failing the whole file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl.cell.cell import Cell
from openpyxl.worksheet.worksheet import Worksheet

#: What makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Control characters neither XLSX nor a careful CSV should carry (tab and newline stay).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    return _ILLEGAL.sub("", text)


def csv_value(value: Any) -> Any:
    """A value for a CSV cell: text that would start a formula gets a leading apostrophe."""
    if not isinstance(value, str):
        return value
    text = clean(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def to_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 with a byte-order mark (Excel needs it to read Chinese), CRLF lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_value(h) for h in headers])
    writer.writerows([csv_value(v) for v in row] for row in rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def put(sheet: Worksheet, row: int, column: int, value: Any) -> Cell:
    """Set a cell; text is stored as text, whatever it starts with."""
    cell = sheet.cell(row=row, column=column)
    if isinstance(value, str):
        cell.value = clean(value)
        cell.data_type = "s"
    else:
        cell.value = value
    return cell


def append(sheet: Worksheet, values: Sequence[Any]) -> int:
    """``Worksheet.append``, with text kept as text; the row's number."""
    sheet.append([clean(v) if isinstance(v, str) else v for v in values])
    row = sheet.max_row
    for cell in sheet[row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"  # openpyxl took a leading "=" for a formula
    return row
