"""core.paging: walking a keyset-paginated list to its end, or until a match, over a list
served a page at a time the way the store ports serve them (opaque token, empty at the end)."""

from __future__ import annotations

import pytest

from server.core.paging import collect, find, items, pages
from server.ports.store import MAX_PAGE_SIZE, Page, PageRequest


class Listing:
    """`values` served in pages of the requested size; the token is the next item's index,
    spelt so that a caller treating it as anything but opaque would break."""

    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.requests: list[PageRequest] = []

    async def fetch(self, request: PageRequest) -> Page[int]:
        self.requests.append(request)
        start = int(request.token.removeprefix("after-") or 0)
        end = start + request.limit
        return Page(self.values[start:end], f"after-{end}" if end < len(self.values) else "")


async def test_every_item_of_every_page_in_order_with_each_token_passed_back() -> None:
    listing = Listing(list(range(7)))
    assert await collect(listing.fetch, size=3) == list(range(7))
    assert listing.requests == [PageRequest(3, ""), PageRequest(3, "after-3"), PageRequest(3, "after-6")]


async def test_pages_come_whole_and_an_empty_list_is_one_empty_page() -> None:
    assert [p.items async for p in pages(Listing([1, 2, 3, 4]).fetch, size=2)] == [[1, 2], [3, 4]]
    empty = Listing([])
    assert [p.items async for p in pages(empty.fetch)] == [[]]
    assert empty.requests == [PageRequest(MAX_PAGE_SIZE, "")]  # full pages unless told otherwise


async def test_pages_are_fetched_only_as_they_are_consumed() -> None:
    listing = Listing(list(range(10)))
    walk = items(listing.fetch, size=4)
    assert [await anext(walk) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(listing.requests) == 2
    await walk.aclose()


async def test_find_stops_at_the_page_of_the_first_match() -> None:
    listing = Listing(list(range(100)))
    assert await find(listing.fetch, lambda n: n % 7 == 6, size=5) == 6
    assert len(listing.requests) == 2
    assert await find(Listing(list(range(9))).fetch, lambda n: n > 100, size=4) is None


async def test_a_failing_page_ends_the_walk_with_its_error() -> None:
    class Down(Exception):
        pass

    served: list[PageRequest] = []

    async def flaky(request: PageRequest) -> Page[int]:
        served.append(request)
        if request.token:
            raise Down("store unavailable")
        return Page([1, 2], "more")

    with pytest.raises(Down):
        await collect(flaky)
    assert len(served) == 2
