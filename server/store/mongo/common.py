"""What the MongoDB aggregate modules share: error translation and keyset pages.

pymongo's errors stop here. Network trouble, timeouts and server-side failures become
Unavailable (the client is configured with bounded timeouts, so a dead server answers within
seconds); a duplicate key becomes AlreadyExists with the field the violated index guards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from bson.errors import BSONError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from server.core.errors import AlreadyExists, InvalidArgument, Unavailable
from server.ports.store import Page, PageRequest
from server.store.codec import decode_token, encode_token

log = logging.getLogger(__name__)

T = TypeVar("T")
Doc = dict[str, Any]
Collection = AsyncCollection[Doc]


@contextmanager
def translated(what: str = "record", unique: Mapping[str, str] | None = None) -> Iterator[None]:
    """unique maps an index name (or its first key) to the field named in AlreadyExists."""
    try:
        yield
    except DuplicateKeyError as exc:
        details = exc.details or {}
        keys = list((details.get("keyPattern") or {}).keys())
        message = str(details.get("errmsg", exc))
        for marker, field in (unique or {}).items():
            if marker in keys or f"index: {marker} " in message:
                message = f"{what} with this {field} already exists"
                raise AlreadyExists(message, field=field) from None
        raise AlreadyExists(f"{what} already exists") from None
    except (BSONError, OverflowError) as exc:  # e.g. an int beyond 64 bits
        raise InvalidArgument(f"value cannot be stored: {exc}") from None
    except PyMongoError as exc:
        log.warning("mongodb error: %s", exc)
        raise Unavailable(f"database unavailable: {type(exc).__name__}") from None


async def keyset_page(
    coll: Collection,
    *,
    kind: str,
    query: Doc,
    sort_field: str,
    page: PageRequest,
    descending: bool,
    to_item: Callable[[Doc], T],
) -> Page[T]:
    limit = page.limit
    if page.token:
        sort_key, last_id = decode_token(kind, page.token)
        op = "$lt" if descending else "$gt"
        after = {"$or": [{sort_field: {op: sort_key}}, {sort_field: sort_key, "_id": {op: last_id}}]}
        query = {"$and": [query, after]} if query else after
    direction = -1 if descending else 1
    with translated():
        cursor = coll.find(query).sort([(sort_field, direction), ("_id", direction)])
        docs = await cursor.limit(limit + 1).to_list(limit + 1)
    token = ""
    if len(docs) > limit:
        docs = docs[:limit]
        token = encode_token(kind, docs[-1][sort_field], docs[-1]["_id"])
    return Page([to_item(d) for d in docs], token)
