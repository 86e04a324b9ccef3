"""What the MongoDB aggregate modules share: documents from records, error translation and keyset
pages.

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
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from server.core.errors import InvalidArgument, NotFound, Unavailable
from server.ports.store import Page, PageRequest
from server.store.codec import ListOrder, Record, already_exists, cut_page, decode_token

log = logging.getLogger(__name__)

T = TypeVar("T")
Doc = dict[str, Any]
Collection = AsyncCollection[Doc]


class Names:
    """A collection's document fields for codec's neutral record names: camelCase, the entity's
    id as _id, and the exceptions given. The names are those of documents already stored, so
    they are fixed: a rename here would hide every stored document's field."""

    def __init__(self, id_name: str, **exceptions: str) -> None:
        self._fields = {id_name: "_id", **exceptions}

    def field(self, name: str) -> str:
        found = self._fields.get(name)
        if found is None:
            head, *rest = name.split("_")
            found = self._fields[name] = head + "".join(part.capitalize() for part in rest)
        return found

    def doc(self, record: Record) -> Doc:
        return {self.field(name): value for name, value in record.items()}

    def of(self, doc: Doc) -> _Renamed:
        """The document read by neutral names (for codec's *_from)."""
        return _Renamed(doc, self)


class _Renamed:
    __slots__ = ("_doc", "_names")

    def __init__(self, doc: Doc, names: Names) -> None:
        self._doc = doc
        self._names = names

    def __getitem__(self, name: str, /) -> Any:
        return self._doc[self._names.field(name)]


@contextmanager
def translated(what: str = "record", unique: Mapping[str, str] | None = None) -> Iterator[None]:
    """unique maps an index name (or its first key) to the field named in AlreadyExists."""
    try:
        yield
    except DuplicateKeyError as exc:
        details = exc.details or {}
        keys = list((details.get("keyPattern") or {}).keys())
        message = str(details.get("errmsg", exc))

        def named(marker: str) -> bool:
            return marker in keys or f"index: {marker} " in message

        raise already_exists(what, unique or {}, named) from None
    except (BSONError, OverflowError) as exc:  # e.g. an int beyond 64 bits
        raise InvalidArgument(f"value cannot be stored: {exc}") from None
    except PyMongoError as exc:
        log.warning("mongodb error: %s", exc)
        raise Unavailable(f"database unavailable: {type(exc).__name__}") from None


async def find_one(coll: Collection, query: Doc, missing: str) -> Doc:
    """The first document the query finds, or NotFound(missing)."""
    with translated():
        d = await coll.find_one(query)
    if d is None:
        raise NotFound(missing)
    return d


async def set_fields(coll: Collection, item_id: str, fields: Doc, missing: str) -> Doc:
    """$set fields on one document by id and return it as stored after, or NotFound(missing)."""
    with translated():
        d = await coll.find_one_and_update({"_id": item_id}, {"$set": fields}, return_document=ReturnDocument.AFTER)
    if d is None:
        raise NotFound(missing)
    return d


async def keyset_page(
    coll: Collection,
    names: Names,
    order: ListOrder,
    query: Doc,
    page: PageRequest,
    to_item: Callable[[Doc], T],
) -> Page[T]:
    """One page in the list's order; the id field is always _id."""
    kind, sort_field, descending = order.kind, names.field(order.sort), order.descending
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
    return cut_page(kind, docs, limit, lambda d: (d[sort_field], d["_id"]), to_item)
