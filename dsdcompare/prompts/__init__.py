"""Prompt suites shipped with dsdcompare, and loaders for the user's own prompt files.

A *suite* is a CSV file in this folder (columns ``prompt,category``), named by its stem:

- ``core``: 72 prompts written for this project, 9 in each of 8 categories (animals, people,
  scenes, objects, counting, composition, text rendering, styles);
- ``shapes``: the 90 captions the toy models are trained on (``"a red circle on a blue
  background"``), for ``--models toy``.

User files, chosen by extension:

- ``.txt``: one prompt a line; blank lines and lines starting with ``#`` are skipped;
- ``.csv`` / ``.tsv``: a header row and a prompt column, found by name (``prompt``, ``prompts``,
  ``text`` or ``caption``, any case) or given with ``column=``; a ``category`` column is kept when
  present. This reads the PartiPrompts (TSV: ``Prompt``, ``Category``, ...) and DrawBench (CSV:
  ``Prompts``, ``Category``) layouts as they are;
- ``.jsonl``: one JSON object a line with a ``prompt`` key (or ``text``, ``caption``, or
  ``column=``) and an optional ``category``; a bare JSON string is a prompt too.

A file that cannot be read raises :class:`PromptFileError` naming the file and line, and so does
a prompt that would silently change meaning: one holding a line break (in a CSV file, a stray
quote joins every following line into one prompt) or an unbalanced double quote, in every format. Exact
duplicate prompts are dropped with a :class:`DuplicatePromptWarning` naming their lines: results
are stored by prompt text, so a repeated prompt could only repeat the same work.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..limits import MAX_PROMPT_CHARS

SUITES_DIR = Path(__file__).resolve().parent
#: File extensions the loaders read.
FORMATS = (".txt", ".csv", ".tsv", ".jsonl")
#: Column (or JSON key) names taken as the prompt, in order of preference, compared without case.
PROMPT_COLUMNS = ("prompt", "prompts", "text", "caption")
CATEGORY_COLUMN = "category"
#: Characters Python takes as line breaks (str.splitlines): none may be inside a prompt.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


class PromptFileError(InputError):
    """A prompt file or suite cannot be read; the message names the file, the line and the fix."""


class DuplicatePromptWarning(UserWarning):
    """A prompt file repeats a prompt; the repeats were dropped."""


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite or file."""

    text: str  # the prompt, stripped of surrounding whitespace
    category: str | None = None  # e.g. "counting"; None when the file has no category
    origin: str = ""  # where it was read, e.g. "core.csv line 12"


def list_suites() -> list[str]:
    """Names of the suites shipped with dsdcompare."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.csv"))


def load_prompts(source: str | os.PathLike, *, column: str | None = None,
                 limit: int | None = None) -> list[Prompt]:
    """The prompts of a suite (by name, see :func:`list_suites`) or of a file (by path).

    ``column`` names the prompt column of a CSV/TSV file or the key of a JSONL file; ``limit``
    keeps the first ``limit`` prompts. Raises :class:`PromptFileError` for an unknown suite, a
    missing or unsupported file, or a bad line (naming it).
    """
    if limit is not None and limit < 1:
        raise PromptFileError(f"limit must be at least 1, got {limit}")
    name = os.fspath(source)
    if name in list_suites():
        path = SUITES_DIR / f"{name}.csv"
    else:
        path = Path(name)
        if not path.is_file():
            raise PromptFileError(
                f"{name!r} is neither a prompt file nor a suite. Suites: {list_suites()}; "
                f"files: one of {', '.join(FORMATS)}")
    prompts = read_prompt_file(path, column=column)
    return prompts[:limit] if limit else prompts


def read_prompt_file(path: str | os.PathLike, *, column: str | None = None) -> list[Prompt]:
    """Read a ``.txt``, ``.csv``, ``.tsv`` or ``.jsonl`` prompt file (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {".txt": _read_txt, ".csv": _read_table, ".tsv": _read_table, ".jsonl": _read_jsonl}
    if suffix not in readers:
        raise PromptFileError(f"{path}: unsupported prompt file type {suffix or '(none)'!r}; "
                              f"use one of {', '.join(FORMATS)}")
    if column is not None and suffix == ".txt":
        raise PromptFileError(f"{path}: a .txt file has one prompt a line and no columns; "
                              f"drop the prompt column ({column!r})")
    text = _decode(path)
    prompts = readers[suffix](text, path.name, column=column, delimiter="\t" if suffix == ".tsv" else ",")
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found")
    return _drop_duplicates(prompts, path.name)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a BOM from spreadsheet exports is not part of a prompt
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise PromptFileError(f"{path.name} line {line}: not valid UTF-8 ({err.reason} at byte "
                              f"{err.start}); save the file as UTF-8") from None


def _checked(prompt: str, where: str) -> str:
    """``prompt`` (stripped), or :class:`PromptFileError` naming ``where`` when it holds a line
    break or an unbalanced double quote, or is too long."""
    prompt = prompt.strip()
    if any(c in _LINE_BREAKS for c in prompt):
        raise PromptFileError(f"{where}: the prompt runs over several lines ({prompt[:40]!r}...); "
                              f"a prompt is one line: close the quote that opens it or remove "
                              f"the line break")
    if prompt.count('"') % 2:
        raise PromptFileError(f"{where}: the prompt has an unbalanced double quote "
                              f"({prompt[:60]!r}); close it or remove it")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptFileError(f"{where}: the prompt has {len(prompt)} characters; at most "
                              f"{MAX_PROMPT_CHARS}")
    return prompt


def _read_txt(text: str, name: str, **_) -> list[Prompt]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            where = f"{name} line {number}"
            out.append(Prompt(_checked(line, where), None, where))
    return out


def _find_column(names: list[str], wanted: str | None, choices: tuple[str, ...]) -> str | None:
    lowered = {n.strip().lower(): n for n in names if n is not None}
    if wanted is not None:
        return wanted if wanted in names else lowered.get(wanted.lower())
    return next((lowered[c] for c in choices if c in lowered), None)


def _read_table(text: str, name: str, *, column: str | None, delimiter: str) -> list[Prompt]:
    # strict: a quote left open to the end of the file is an error, not one long prompt
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        raise PromptFileError(f"{name} line 1: cannot parse the header: {err}") from None
    if not header:
        raise PromptFileError(f"{name}: no prompts found (the file is empty)")
    prompt_col = _find_column(header, column, PROMPT_COLUMNS)
    if prompt_col is None:
        wanted = repr(column) if column else f"one of {list(PROMPT_COLUMNS)}"
        raise PromptFileError(f"{name} line 1: no prompt column ({wanted}); the header has "
                              f"{header}. Name the column with --prompt-column")
    category_col = _find_column(header, None, (CATEGORY_COLUMN,))
    out = []
    rows = iter(reader)
    while True:
        where = f"{name} line {reader.line_num + 1}"  # where the next record starts
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as err:
            raise PromptFileError(f"{where}: {err}: a stray or unbalanced quote (\"); close it, "
                                  f"or double it inside a quoted field") from None
        if None in row:  # more fields than the header: an unquoted delimiter in a prompt
            raise PromptFileError(
                f"{where}: {len(header) + len(row[None])} fields but the header has "
                f"{len(header)}; quote fields that contain {delimiter!r}")
        prompt = _checked(row.get(prompt_col) or "", where)
        if not prompt:
            raise PromptFileError(f"{where}: empty prompt in column {prompt_col!r}")
        category = (row.get(category_col) or "").strip() or None if category_col else None
        out.append(Prompt(prompt, category, where))
    return out


def _read_jsonl(text: str, name: str, *, column: str | None, **_) -> list[Prompt]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise PromptFileError(f"{where}: nested too deeply; give an object with a prompt "
                                  f"key, or a string") from None
        category = None
        if isinstance(record, dict):
            key = _find_column(list(record), column, PROMPT_COLUMNS)
            if key is None:
                wanted = repr(column) if column else f"one of {list(PROMPT_COLUMNS)}"
                raise PromptFileError(f"{where}: no prompt key ({wanted}); the object has "
                                      f"{list(record)}")
            prompt = record[key]
            cat_key = _find_column(list(record), None, (CATEGORY_COLUMN,))
            category = record.get(cat_key) if cat_key else None
        elif isinstance(record, str):
            prompt = record
        else:
            raise PromptFileError(f"{where}: expected a JSON object with a prompt, or a string; "
                                  f"got {type(record).__name__}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f"{where}: the prompt must be a non-empty string, got {prompt!r}")
        out.append(Prompt(_checked(prompt, where), str(category).strip() or None if category
                          else None, where))
    return out


def _line_of(prompt: Prompt) -> str:
    return prompt.origin.rsplit(" ", 1)[-1]


def _drop_duplicates(prompts: list[Prompt], name: str) -> list[Prompt]:
    first: dict[str, Prompt] = {}
    repeats = []
    for p in prompts:
        if p.text in first:
            repeats.append(f"line {_line_of(p)} repeats line {_line_of(first[p.text])}")
        else:
            first[p.text] = p
    if repeats:
        shown = "; ".join(repeats[:5]) + (f"; and {len(repeats) - 5} more" if len(repeats) > 5 else "")
        warnings.warn(f"{name}: {len(repeats)} duplicate prompt(s) dropped ({shown})",
                      DuplicatePromptWarning, stacklevel=3)
    return list(first.values())
