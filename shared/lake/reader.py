"""The one way this project reads a Delta table back: deltalake's own query engine, into polars.

Not ``polars.read_delta`` or ``scan_delta``: polars' cloud reader starts a control loop that calls
``getenv`` for the rest of the process, and glibc's ``getenv`` is not safe against a concurrent
``setenv``. The local host, the ops commands and the tests change the environment while the
process runs, and the two together crashed a test run with a segmentation fault."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import polars as pl
from deltalake import DeltaTable, QueryBuilder


def read_delta(
    uri: str,
    storage_options: Mapping[str, str],
    *,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    limit: int | None = None,
) -> pl.DataFrame:
    """The table's rows (``columns`` only, those matching the SQL condition ``where``, at most
    ``limit``). Raises ``TableNotFoundError`` for a table nothing was ever flushed to."""
    selected = ", ".join(_identifier(column) for column in columns) if columns else "*"
    query = f"SELECT {selected} FROM t"
    if where:
        query += f" WHERE {where}"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return _run(uri, storage_options, query)


def count_rows(uri: str, storage_options: Mapping[str, str]) -> int:
    return int(_run(uri, storage_options, "SELECT COUNT(*) AS rows FROM t").item())


def text_in(column: str, values: Iterable[str]) -> str:
    """A condition for :func:`read_delta`: the column, as text, is one of ``values``."""
    listed = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"CAST({_identifier(column)} AS VARCHAR) IN ({listed})" if listed else "FALSE"


def _run(uri: str, storage_options: Mapping[str, str], query: str) -> pl.DataFrame:
    table = DeltaTable(uri, storage_options=dict(storage_options))
    return pl.DataFrame(QueryBuilder().register("t", table).execute(query))


def _identifier(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'
