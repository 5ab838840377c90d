"""Untrusted text (label values from Prometheus or a file: pool, cluster, instance-type
names) made safe for where it is shown. Display only: the data itself (DuckDB, the plan
YAML) always keeps the exact value.

* :func:`for_terminal`: the CLI and log lines. Control characters (line breaks, ESC, ...)
  and bidi / zero-width format characters (U+202E RIGHT-TO-LEFT OVERRIDE reverses what
  follows on screen) become visible escapes the way ``repr`` writes them (``\\n``,
  ``\\x1b``, ``\\u202e``), so a label cannot forge a log line, recolour the terminal or hide
  text; long values are cut for display.
* :func:`csv_cell` / :func:`csv_safe`: a cell starting with ``=``, ``+``, ``-``, ``@``, a
  tab or a carriage return gets a leading single quote, so a spreadsheet shows it as text
  instead of running it as a formula (OWASP "CSV Injection":
  https://owasp.org/www-community/attacks/CSV_Injection).

HTML is escaped by Jinja2's autoescape (report) and ``html.escape`` (email, chart text).
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["for_terminal", "csv_cell", "csv_safe", "DISPLAY_CHARS"]

#: How much of one value a terminal line shows.
DISPLAY_CHARS = 200

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (Trojan Source, CVE-2021-42574: U+202A-U+202E, U+2066-U+2069, U+200B-U+200F, U+061C,
# U+2028/U+2029 line and paragraph separators, U+FEFF).
FORMAT_CHARS = "\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f{FORMAT_CHARS}]")
_UNSAFE_BUT_LF = re.compile(f"[\x00-\x09\x0b-\x1f{FORMAT_CHARS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _visible(ch: str) -> str:
    o = ord(ch)
    return _NAMED.get(ch) or (f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")


def for_terminal(text: object, limit: int | None = DISPLAY_CHARS, keep_newlines: bool = False) -> str:
    """``text`` for one terminal or log line: unsafe characters as visible escapes (other
    text as it is), cut to ``limit`` characters with the full length named (None: no cut).
    ``keep_newlines`` keeps the line breaks of a message that has several lines by design
    (each label inside it must have been passed through this function already)."""
    s = (_UNSAFE_BUT_LF if keep_newlines else _UNSAFE).sub(lambda m: _visible(m.group(0)), str(text))
    if limit is not None and len(s) > limit:
        s = f"{s[:limit]}... ({len(s):,} chars)"
    return s


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not evaluate: text starting with ``= + - @``, a tab or
    a carriage return gets a leading ``'``; anything else (numbers too) is returned as is."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell passed through :func:`csv_cell` (numeric
    columns untouched)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_cell)
    return out
