"""Helpers the SQLite aggregate modules share: rows from records, keyset pages, unique-violation
mapping."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from server.core.errors import AlreadyExists
from server.ports.store import Page, PageRequest
from server.store import codec
from server.store.codec import Record, cut_page, decode_token
from server.store.sqlite.db import IntegrityViolation

T = TypeVar("T")
Row = sqlite3.Row


def already_exists(exc: IntegrityViolation, fields: dict[str, str], what: str) -> AlreadyExists:
    """Map "UNIQUE constraint failed: users.email" (or an index name) to AlreadyExists."""
    return codec.already_exists(what, fields, lambda marker: marker in exc.message)


def insert_sql(table: str, record: Record) -> tuple[str, tuple[Any, ...]]:
    """INSERT of one record, the columns named (so the table's column order does not matter)."""
    columns = ", ".join(record)
    marks = ", ".join("?" * len(record))
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(record.values())  # noqa: S608 - codec's names


def equal_where(conditions: Record) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters for column = value conditions (codec's *_matches)."""
    return [f"{column} = ?" for column in conditions], list(conditions.values())


def keyset_page(
    conn: sqlite3.Connection,
    *,
    kind: str,
    table: str,
    sort_col: str,
    id_col: str,
    where: Sequence[str],
    params: Sequence[Any],
    page: PageRequest,
    descending: bool,
    to_item: Callable[[Row], T],
) -> Page[T]:
    """One page ordered by (sort_col, id_col); the token is the last row's (sort, id)."""
    limit = page.limit
    clauses = list(where)
    args = list(params)
    if page.token:
        sort_key, last_id = decode_token(kind, page.token)
        op = "<" if descending else ">"
        # a row-value comparison walks the (sort_col, id_col) index from the position
        clauses.append(f"({sort_col}, {id_col}) {op} (?, ?)")
        args += [sort_key, last_id]
    direction = "DESC" if descending else "ASC"
    sql = f"SELECT * FROM {table}"  # noqa: S608 - identifiers are constants of this package
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY {sort_col} {direction}, {id_col} {direction} LIMIT ?"
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    return cut_page(kind, rows, limit, lambda r: (r[sort_col], r[id_col]), to_item)


def fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Row | None:
    # fetchall: a RETURNING statement must run to completion before the transaction commits
    rows: list[Row] = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None
