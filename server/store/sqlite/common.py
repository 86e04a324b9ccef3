"""Helpers the SQLite aggregate modules share: rows from records, keyset pages, unique-violation
mapping."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from server.core.errors import AlreadyExists, NotFound
from server.ports.store import Page, PageRequest
from server.store import codec
from server.store.codec import ListOrder, Record, cut_page, decode_token
from server.store.sqlite.db import Database, IntegrityViolation

T = TypeVar("T")
Row = sqlite3.Row


def already_exists(exc: IntegrityViolation, fields: dict[str, str], what: str) -> AlreadyExists:
    """Map "UNIQUE constraint failed: users.email" (or an index name) to AlreadyExists."""
    return codec.already_exists(what, fields, lambda marker: marker in exc.message)


async def insert(db: Database, table: str, record: Record, unique: dict[str, str], what: str) -> None:
    """Insert one record, its columns named (the table's column order does not matter); a unique
    violation is AlreadyExists naming the field (see already_exists)."""
    marks = ", ".join("?" * len(record))
    sql = f"INSERT INTO {table} ({', '.join(record)}) VALUES ({marks})"  # noqa: S608 - codec's names
    params = tuple(record.values())
    try:
        await db.write(lambda c: c.execute(sql, params))
    except IntegrityViolation as exc:
        raise already_exists(exc, unique, what) from None


async def read_one(db: Database, sql: str, params: Sequence[Any], missing: str) -> Row:
    """The first row the query finds, or NotFound(missing)."""
    row = await db.read(lambda c: fetch_one(c, sql, params))
    if row is None:
        raise NotFound(missing)
    return row


async def update_one(
    db: Database, table: str, id_col: str, item_id: str, assignments: str, params: Sequence[Any], missing: str
) -> Row:
    """UPDATE one row by id and return it as stored after, or NotFound(missing)."""
    sql = f"UPDATE {table} SET {assignments} WHERE {id_col} = ? RETURNING *"  # noqa: S608 - constants
    row = await db.write(lambda c: fetch_one(c, sql, (*params, item_id)))
    if row is None:
        raise NotFound(missing)
    return row


def equal_where(conditions: Record) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters for column = value conditions (codec's *_matches)."""
    return [f"{column} = ?" for column in conditions], list(conditions.values())


async def keyset_page(
    db: Database,
    table: str,
    order: ListOrder,
    where: Sequence[str],
    params: Sequence[Any],
    page: PageRequest,
    to_item: Callable[[Row], T],
) -> Page[T]:
    """One page in the list's order, by (sort, id) columns; the token is the last row's (sort, id)."""
    kind, sort_col, id_col, descending = order.kind, order.sort, order.id, order.descending
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

    def run(c: sqlite3.Connection) -> Page[T]:
        rows = c.execute(sql, args).fetchall()
        return cut_page(kind, rows, limit, lambda r: (r[sort_col], r[id_col]), to_item)

    return await db.read(run)


def fetch_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Row | None:
    # fetchall: a RETURNING statement must run to completion before the transaction commits
    rows: list[Row] = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None
