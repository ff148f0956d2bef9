"""Reading the spreadsheets people upload (rosters, lists of problems): CSV (UTF-8 with or
without BOM, or GB18030/GBK as Excel on a Chinese Windows saves it) or XLSX (the first sheet),
into a header row and data rows with their row numbers as a spreadsheet shows them (the header
is row 1). A file that cannot be read is refused as a whole with a Chinese reason
(:class:`ImportRefused`); what a row means is the caller's.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 2000
#: An XLSX is a zip: what it may unpack to, so that a small file cannot expand without bound.
MAX_UNPACKED_BYTES = 60 * 1024 * 1024


class ImportRefused(Exception):
    """The file as a whole cannot be read (HTTP 422, or 413 when it is too large)."""

    def __init__(self, message: str, *, status: int = 422, code: str = "invalid_file") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def header_key(value: Any) -> str:
    text = unicodedata.normalize("NFKC", str(value or "")).strip().lstrip("\ufeff")
    text = text.rstrip("*").strip().lower()  # 案由* marks a required column in many templates
    return re.sub(r"\s+", "_", text)


def _cell(value: Any) -> str:
    """A cell as text: whole numbers without ``.0`` (an id typed as 1001 in Excel), dates in ISO."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _is_xlsx(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # only an import of a spreadsheet needs it

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise ImportRefused("无法读取 Excel 文件，请确认是 .xlsx 格式") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise ImportRefused("Excel 文件解压后过大，请拆分后上传", status=413, code="too_large")
    try:
        # values as Excel last computed them, and the formulas beside them: a formula whose result
        # was never saved (a file written by a program) reads as empty, which is not what it says
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:
        raise ImportRefused("无法读取 Excel 文件，请确认是 .xlsx 格式") from None
    try:
        if not workbook.worksheets:
            raise ImportRefused("Excel 文件没有工作表")
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        written = formulas.worksheets[0].iter_rows(values_only=True)
        try:
            for number, (values, as_written) in enumerate(zip(rows, written, strict=False), start=1):
                for column, (value, formula) in enumerate(zip(values, as_written, strict=False), start=1):
                    if value is None and isinstance(formula, str) and formula.startswith("="):
                        raise ImportRefused(
                            f"第 {number} 行第 {column} 列是公式，文件中没有它的计算结果：请在 Excel 中打开并保存，"
                            "或将公式复制后“粘贴为数值”，再上传"
                        )
                yield number, [_cell(v) for v in values]
        except ImportRefused:
            raise
        except Exception:
            raise ImportRefused("无法读取 Excel 文件的第一个工作表") from None
    finally:
        workbook.close()
        formulas.close()


def _decode_text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break  # a binary file that happens to decode
        return text
    raise ImportRefused("文件不是 CSV 或 XLSX（CSV 请以 UTF-8 或 GBK 编码保存）")


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    if data[:4] == b"\xd0\xcf\x11\xe0":
        raise ImportRefused("不支持旧版 .xls 文件，请另存为 .xlsx 或 CSV 后上传")
    text = _decode_text(data)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    # strict: a quote left open reads to the end of the file as one cell rather than as a row
    # whose later cells are empty (then refused for the wrong reason)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    number = 0
    try:
        for number, values in enumerate(reader, start=1):
            yield number, values
    except csv.Error:
        raise ImportRefused(f"CSV 第 {number + 1} 行无法读取（单元格过大或引号不配对）") from None


def read_table(
    data: bytes,
    headers: Mapping[str, str],
    required: Sequence[str],
    labels: Mapping[str, str],
    *,
    example: str,
    max_rows: int = MAX_ROWS,
) -> tuple[dict[str, str], list[tuple[int, dict[str, str]]]]:
    """The columns found (column → the label the file used) and the non-empty data rows with
    their row numbers. ``headers`` maps a column name as written (after :func:`header_key`) to
    the column; ``labels`` names a column in Chinese; ``example`` lists the expected column
    names for the refusal of a file without a ``required`` column. Refuses a file that is not
    CSV/XLSX, lacks a required column or has more than ``max_rows`` rows."""
    if len(data) > MAX_BYTES:
        raise ImportRefused(f"文件过大（上限 {MAX_BYTES // 1024 // 1024} MB）", status=413, code="too_large")
    if not data.strip():
        raise ImportRefused("文件是空的")
    source = _xlsx_rows(data) if _is_xlsx(data) else _csv_rows(data)
    columns: dict[int, str] | None = None
    found: dict[str, str] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    for number, values in source:
        if not any(v.strip() for v in values):
            continue
        if columns is None:
            columns = {}
            for position, value in enumerate(values):
                column = headers.get(header_key(value))
                if column is not None and column not in found:
                    columns[position] = column
                    found[column] = str(value).strip().lstrip("\ufeff")
            missing = [labels[c] for c in required if c not in found]
            if missing:
                raise ImportRefused(f"缺少必需的列：{'、'.join(missing)}（第一行应为列名，如 {example}）")
            continue
        if len(rows) >= max_rows:
            raise ImportRefused(f"行数超过上限 {max_rows} 行，请拆分后上传", status=413, code="too_many_rows")
        rows.append((number, {c: values[p].strip() for p, c in columns.items() if p < len(values)}))
    if columns is None:
        raise ImportRefused("文件是空的")
    return found, rows


# -- the upload ---------------------------------------------------------------------------------
def upload_body(description: str) -> dict[str, Any]:
    """OpenAPI's description of a route taking one file (``openapi_extra``)."""
    file = {"type": "string", "format": "binary", "description": description}
    schema = {"type": "object", "properties": {"file": file}, "required": ["file"]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


async def uploaded_file(request: Any) -> tuple[bytes, str]:
    """The bytes and name of the file a request uploaded (multipart field ``file``), read up to
    one byte past ``MAX_BYTES`` (so ``read_table`` can refuse it); ``ImportRefused`` without one."""
    from starlette.datastructures import UploadFile

    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ImportRefused("请以 multipart/form-data 上传文件（字段名 file）", code="missing_file")
        return await upload.read(MAX_BYTES + 1), upload.filename or ""
    finally:
        await form.close()
