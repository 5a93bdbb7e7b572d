"""CSV files for the commands: numbers with an optional header line, and the column
names that header gives, which travel with a model trained on the file.

A file's first line is a header (skipped) when none of its fields is a
number; every problem is a `UserError` naming the file and the 1-based line
and column of the bad field.
"""

import csv
import itertools
import os
import re
import warnings

import numpy as np

from kerasflows.cli.common import UserError, csv_field, plural
from kerasflows.cli.common import is_number_field as _is_number

__all__ = ["read_column_names", "model_column_names", "model_dequantized_columns",
           "check_column_names", "column_list", "name_list"]


def _lines(path):
    """`(line number, text)` of each line of the file as `np.loadtxt` reads it (a UTF-8
    byte-order mark and the line's end dropped); a UserError naming the line and the
    byte of text that is not UTF-8."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, 1):
                yield number, line[:-1] if line.endswith("\n") else line
    except UnicodeDecodeError:
        raise UserError(_not_utf8(path)) from None


def _not_utf8(path):
    """The message for a file that is not UTF-8 text: the line (counted as Python and
    NumPy count them, at \\n, \\r\\n or \\r) and file offset of its first bad byte."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
        return f"{path}: not UTF-8 text."
    except UnicodeDecodeError as e:
        start, reason = e.start, e.reason
    line = len(re.findall(rb"\r\n|\r|\n", data[:start])) + 1
    return (f"{path}: not UTF-8 text (line {line}: byte 0x{data[start]:02x} at offset {start} "
            f"of the file, {reason}). Save it as UTF-8.")


def _csv_rows(path):
    """`(line number, fields)` of each line `np.loadtxt` reads as a row: a line empty
    but for a `#` comment is skipped; one of white space only is not (NumPy reads it
    as a row of one blank field)."""
    for number, line in _lines(path):
        text = line.split("#", 1)[0]
        if text:
            yield number, text.split(",")


def _blank(fields):
    """True for the fields of a line of white space only."""
    return len(fields) == 1 and not fields[0].strip()


def _first_row(path):
    """`(line number, fields)` of the first row of the CSV file with more than white
    space (before it, `np.loadtxt`'s `skiprows` skips any line), or None."""
    return next(((number, fields) for number, fields in _csv_rows(path)
                 if not _blank(fields)), None)


def _header_line(path):
    """The line number of the CSV file's header line, 0 if it has none."""
    return _header_of(path, _first_row(path))


def _header_of(path, first):
    """The line number of `first` (`_first_row(path)`) if it is a header line (none of
    its fields is a number), else 0. A line with a quote in it is split at its commas
    outside quotes (`_quoted_fields`): a quoted name may hold a comma ("sales, 2020,
    USD"), whose pieces split at every comma held a number, and the header was read
    as data."""
    if first is None:
        return 0
    fields = first[1]
    line = next(text for number, text in _lines(path) if number == first[0])
    if '"' in line:
        fields = _quoted_fields(line) or fields
    return first[0] if not any(_is_number(v) for v in fields) else 0


def _quoted_fields(line):
    """`line` up to a `#` outside double quotes, split at its commas outside them, each
    field as written (a quoted one keeps its quotes, so a quoted "1" is a name, not a
    number); None when its quotes before that `#` do not pair up (not a header of
    quoted names: a stray quote in a row of numbers)."""
    fields, start, quoted = [], 0, False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            line = line[:i]
            break
        elif char == "," and not quoted:
            fields.append(line[start:i])
            start = i + 1
    return None if quoted else fields + [line[start:]]


def _read_csv(path):
    """`(numbers, header)`: the numbers in a CSV file, and the line number of its
    header line (0 if none). Its first line is a header (skipped) when none of its
    fields is a number; otherwise it is data, and a bad field in it is reported."""
    first = _first_row(path)
    if first is None:
        raise UserError(f"{path}: no data (the file holds no rows).")
    header = _header_of(path, first)
    try:
        with open(path, encoding="utf-8-sig") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")       # "input contained no data": said below
            array = np.loadtxt(f, delimiter=",", ndmin=2, skiprows=header)
    except ValueError as e:
        raise UserError(_csv_problem(path, header, first[0])
                        or f"{path}: cannot read the data ({e}).") from None
    if array.size == 0:
        why = ""
        if header and any(mark in field for field in first[1] for mark in ";\t"):
            why = (f" (line {header} was read as a header, as none of its fields is a "
                   "number; fields are separated by commas)")
        raise UserError(f"{path}: no data rows after its header line {header}{why}.")
    empty = _empty_line_between_rows(path, header) if array.shape[1] == 1 else None
    if empty is not None:
        raise UserError(f"{path}: line {empty} is empty, between rows of this one-column "
                        "file: a missing value (an empty field), which would be dropped "
                        "without a word. Remove the line or fill in the value.")
    return array, header


def _empty_line_between_rows(path, header):
    """The number of the first empty line after line `header` that has a data row (or
    the header line) before it and a data row after it (`np.loadtxt` skips it: in a
    one-column file, a missing value), or None. Lines of a `#` comment only are not
    empty."""
    empty, rows = None, header > 0
    for number, line in _lines(path):
        if number <= header:
            continue
        if not line.strip():
            if rows and empty is None:
                empty = number
        elif line.split("#", 1)[0].strip():
            if empty is not None:
                return empty
            rows = True
    return None


def read_column_names(spec):
    """The column names on the header line of the CSV file `spec`, or None: no header
    line, a `.npy` file or a dataset name. The line is read as the `csv` module reads
    it (a quoted name may hold a comma, and a name may hold '#'); quotes and spaces
    around each name are stripped, and a blank one is named as in a file without a
    header line, x1, x2, ..."""
    if not (isinstance(spec, str) and spec.endswith(".csv") and os.path.isfile(spec)):
        return None
    first = _first_row(spec)
    if not _header_of(spec, first):
        return None
    line = next(text for number, text in _lines(spec) if number == first[0])
    names = [field.strip() for field in next(csv.reader([line], skipinitialspace=True))]
    return _fill_blank_names(names, f"{spec}: line {first[0]}")


def _fill_blank_names(names, where):
    """`names` with each blank one replaced by the name the commands give that column
    of a file without a header line (x1, x2, ... by position); a UserError at
    `where` when that name is already another column's."""
    filled = list(names)
    for k, name in enumerate(names):
        if not name.strip():
            default = f"x{k + 1}"
            if default in names:
                raise UserError(f"{where}: column {k + 1} has no name and cannot take the "
                                f"default {default}, column {names.index(default) + 1}'s "
                                f"name. Name column {k + 1}.")
            filled[k] = default
    return filled


def _record(model):
    """The training record of `model` (a .keras file or model folder), or {}."""
    from kerasflows.loading import training_record
    try:
        return training_record(model) or {}
    except ValueError:
        return {}


def model_column_names(model, key="columns"):
    """The data column names a model was trained on (the training record's `columns`,
    from the CSV header of `kerasflows train`'s DATA, blank ones named as
    `read_column_names` names them; with `key="context_columns"`, those of its
    `--context` file), or None."""
    names = _record(model).get(key)
    ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    return _fill_blank_names(names, f"{model}: the training record's {key}") if ok else None


def model_dequantized_columns(model, event_dim):
    """The columns (0-based) that `kerasflows train --dequantize` added uniform noise
    to for `model` (its training record's `dequantized_columns`), or None."""
    columns = _record(model).get("dequantized_columns")
    ok = (isinstance(columns, list) and columns and
          all(isinstance(k, int) and 0 <= k < event_dim for k in columns))
    return columns if ok else None


def column_list(columns, names=None):
    """"column 2" or "columns 1 (age), 3 (visits)": 0-based `columns` as the 1-based
    numbers the messages use, with their `names` (all the data's) when given."""
    label = lambda k: f"{k + 1}" + (f" ({names[k]})" if names and k < len(names) else "")
    return ("column " if len(columns) == 1 else "columns ") + ", ".join(map(label, columns))


def name_list(names):
    """`names` as a header line would give them, ", "-separated: "a", "income, USD"."""
    return ", ".join(map(csv_field, names))


def check_column_names(spec, names, whose):
    """A `UserError` when the CSV file `spec` has a header line whose names differ
    from `names`, the columns `whose` names ("m.keras was trained on", "d.csv
    has"): a file's columns in another order would be read silently as the
    wrong coordinates."""
    found = read_column_names(spec)
    if names is None or found is None or found == names:
        return
    order = " (the same names in another order)" if sorted(found) == sorted(names) else ""
    raise UserError(f"{spec}'s columns are {name_list(found)}; {whose} columns "
                    f"{name_list(names)}{order}. Give the columns in that order and under "
                    "those names, or drop the header line to use the file as it is.")


def _csv_line(path, header, row):
    """The 1-based line number of data row `row` (from 0) in the CSV file."""
    lines = (number for number, _ in _csv_rows(path) if number > header)
    return next(itertools.islice(lines, row, None))


def _csv_problem(path, header, first):
    """The first bad field or changed column count in the CSV file, by 1-based line
    and column; None if none is found."""
    width = None
    for number, fields in _csv_rows(path):
        if number <= header:
            continue
        if _blank(fields):
            return (f"{path}: line {number} holds only white space (before any # comment), "
                    "which NumPy reads as a row of one blank field; leave such a line empty.")
        for column, field in enumerate(fields, 1):
            if not _is_number(field):
                why = ""
                if number == first:
                    why = (f" (line {number} is read as data, not as a header line, as it has "
                           "a number in it)")
                elif any(mark in field for mark in ";\t"):
                    why = " (fields are separated by commas)"
                return (f"{path}: line {number}, column {column}: {field.strip()!r} is not a "
                        f"number{why}.")
        if width is None:
            width = (number, len(fields))
        elif len(fields) != width[1]:
            return (f"{path}: line {number} has {plural(len(fields), 'field')}; line "
                    f"{width[0]} has {width[1]}.")
    return None
