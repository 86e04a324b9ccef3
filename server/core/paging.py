"""Reading a keyset-paginated list to its end (or until a match), for core's own walks.

Every list port (store aggregates, the firmware catalog) takes a PageRequest and answers a Page
whose `next_page_token` is empty on the last page. Core walks whole lists in a few places (the
active OTA jobs at start-up, a rollout's jobs and targets, the dashboard's totals, the release
fallback); they all go through here so none of them stops at the first page or loops forever on
a token. Pages are fetched one at a time, only as the caller consumes them.

    async for device in items(partial(store.devices.list, flt)):
        ...
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from server.ports.store import MAX_PAGE_SIZE, Page, PageRequest

T = TypeVar("T")

# One page of a list, given where to start; e.g. `partial(store.devices.list, flt)`.
FetchPage = Callable[[PageRequest], Awaitable[Page[T]]]


async def pages(fetch: FetchPage[T], size: int = MAX_PAGE_SIZE) -> AsyncGenerator[Page[T], None]:
    """Every page in order, the first one even when it is empty."""
    token = ""
    while True:
        page = await fetch(PageRequest(size, token))
        yield page
        token = page.next_page_token
        if not token:
            return


async def items(fetch: FetchPage[T], size: int = MAX_PAGE_SIZE) -> AsyncGenerator[T, None]:
    """Every item of every page, in the list's order."""
    async for page in pages(fetch, size):
        for item in page.items:
            yield item


async def collect(fetch: FetchPage[T], size: int = MAX_PAGE_SIZE) -> list[T]:
    return [item async for item in items(fetch, size)]


async def find(fetch: FetchPage[T], match: Callable[[T], bool], size: int = MAX_PAGE_SIZE) -> T | None:
    """The first item that matches, fetching no page after the one it is on."""
    # aclosing: stopping early must end the page walk now, not whenever it is garbage-collected.
    async with aclosing(pages(fetch, size)) as walk:
        async for page in walk:
            for item in page.items:
                if match(item):
                    return item
    return None
