"""The Eventhouse query endpoint of the simulator: ``POST /v2/rest/query`` answered in the Kusto v2
REST response format (a JSON array of frames: DataSetHeader, DataTables, DataSetCompletion).

It runs the one query the ClaimX poller sends (``shared.claimx.poller.QUERY``) against the world's
``eventhouse`` section, ``{"<table>": [{"ingestion_time": "<ISO>", <column>: <value>, ...}]}``,
with the query's parameters; any other query answers 400, as a query error would.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

_DECLARE = "declare query_parameters(after_time:datetime, after_key:string, until_time:datetime"
_TABLE = re.compile(r"\);\s*\n\s*([A-Za-z_][A-Za-z0-9_]*)\s*\n")
_LITERAL = re.compile(r"^datetime\((.*)\)$")


def _time(value: str) -> datetime:
    text = _LITERAL.sub(r"\1", value.strip()).strip().removesuffix("Z")
    main, _, fraction = text.partition(".")
    micros = (fraction + "000000")[:6] if fraction else "000000"
    return datetime.fromisoformat(f"{main}.{micros}").replace(tzinfo=UTC)


def _kusto_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def row_key(row: dict[str, Any]) -> str:
    """The simulator's stand-in for ``hash_sha256(tostring(pack_all()))``."""
    columns = {k: v for k, v in row.items() if k != "ingestion_time"}
    return hashlib.sha256(json.dumps(columns, sort_keys=True, default=str).encode()).hexdigest()


def _column_type(values: list[Any]) -> str:
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "long"
        if isinstance(value, float):
            return "real"
        if isinstance(value, dict | list):
            return "dynamic"
        return "string"
    return "string"


def _error(message: str) -> web.Response:
    body = {"error": {"code": "BadRequest_SyntaxError", "message": message, "@permanent": True}}
    return web.Response(status=400, text=json.dumps(body), content_type="application/json")


def answer_query(tables: dict[str, Any], body: dict[str, Any]) -> web.Response:
    query = str(body.get("csl", ""))
    if not query.startswith(_DECLARE):
        return _error("the simulator answers only the ClaimX poller's query")
    match = _TABLE.search(query)
    if match is None:
        return _error("no table in the query")
    table = match[1]
    if table not in tables:
        return _error(f"'{table}' could not be resolved to a table")
    properties = body.get("properties") or "{}"
    parameters = (json.loads(properties) if isinstance(properties, str) else properties).get("Parameters", {})
    after, after_key = _time(parameters["after_time"]), str(parameters.get("after_key", ""))
    until, limit = _time(parameters["until_time"]), int(parameters["batch_size"])

    selected = []
    for row in tables[table]:
        at = _time(str(row["ingestion_time"]))
        key = row_key(row)
        if at <= until and (at > after or (at == after and key > after_key)):
            selected.append((at, key, row))
    selected.sort(key=lambda item: (item[0], item[1]))
    selected = selected[:limit]

    names: list[str] = []
    for _, _, row in selected:
        names.extend(k for k in row if k != "ingestion_time" and k not in names)
    columns = [
        {"ColumnName": name, "ColumnType": _column_type([row.get(name) for _, _, row in selected])}
        for name in names
    ]
    columns += [
        {"ColumnName": "_key", "ColumnType": "string"},
        {"ColumnName": "_ingested", "ColumnType": "string"},
    ]
    rows = [[row.get(name) for name in names] + [key, _kusto_text(at)] for at, key, row in selected]
    frames = [
        {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0"},
        {
            "FrameType": "DataTable",
            "TableId": 0,
            "TableKind": "QueryProperties",
            "TableName": "@ExtendedProperties",
            "Columns": [
                {"ColumnName": "TableId", "ColumnType": "int"},
                {"ColumnName": "Key", "ColumnType": "string"},
                {"ColumnName": "Value", "ColumnType": "dynamic"},
            ],
            "Rows": [],
        },
        {
            "FrameType": "DataTable",
            "TableId": 1,
            "TableKind": "PrimaryResult",
            "TableName": "PrimaryResult",
            "Columns": columns,
            "Rows": rows,
        },
        {
            "FrameType": "DataTable",
            "TableId": 2,
            "TableKind": "QueryCompletionInformation",
            "TableName": "QueryCompletionInformation",
            "Columns": [
                {"ColumnName": "Timestamp", "ColumnType": "datetime"},
                {"ColumnName": "ClientRequestId", "ColumnType": "string"},
                {"ColumnName": "ActivityId", "ColumnType": "guid"},
                {"ColumnName": "SubActivityId", "ColumnType": "guid"},
                {"ColumnName": "ParentActivityId", "ColumnType": "guid"},
                {"ColumnName": "Level", "ColumnType": "int"},
                {"ColumnName": "LevelName", "ColumnType": "string"},
                {"ColumnName": "StatusCode", "ColumnType": "int"},
                {"ColumnName": "StatusCodeName", "ColumnType": "string"},
                {"ColumnName": "EventType", "ColumnType": "int"},
                {"ColumnName": "EventTypeName", "ColumnType": "string"},
                {"ColumnName": "Payload", "ColumnType": "string"},
            ],
            "Rows": [],
        },
        {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
    ]
    return web.Response(text=json.dumps(frames), content_type="application/json")
