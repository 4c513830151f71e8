"""All SQL lives in ``edge_app/store/``: a query anywhere else is a table change waiting
to be missed. This reads every module's string literals (f-strings included) and names
the file and line of any that looks like SQL."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edge_app"
SQL = re.compile(r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b"
                 r"|\bDELETE\s+FROM\b|\bCREATE\s+(?:TABLE|INDEX)\b")


def sql_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal that looks like SQL; an f-string is read as one
    string with ``{}`` for its fields, so "SELECT {cols} FROM t" is caught too."""
    found, inside_fstrings = [], set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            inside_fstrings.update(id(v) for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, text))
    return found


def test_the_checker_finds_sql_in_plain_and_f_strings():
    source = ('a = "SELECT id FROM users"\n'
              'b = f"SELECT {cols} FROM minute_stats"\n'
              'c = ("UPDATE uploads "\n     "SET image_path = ?")\n'
              'd = "Select a file from your computer"\n'
              'e = "DELETE FROM sessions WHERE 1"\n')
    assert [line for line, _ in sql_literals(source)] == [1, 2, 3, 6]


def test_no_sql_outside_the_store_package():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "store") in path.parents:
            continue
        for line, text in sql_literals(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:70]!r}")
    assert not offenders, ("SQL outside edge_app/store/; move it into a store function:\n  "
                           + "\n  ".join(offenders))
