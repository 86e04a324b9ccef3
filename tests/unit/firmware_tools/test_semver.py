from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools.semver import InvalidVersionError, parse_version


def test_numeric_parts_compare_as_numbers() -> None:
    assert parse_version("1.10.0") > parse_version("1.9.0")
    assert parse_version("2.0.0") > parse_version("1.99.99")


def test_prerelease_order_follows_semver() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    versions = [parse_version(v) for v in ordered]
    assert sorted(reversed(versions)) == versions
    assert all(a < b for a, b in itertools.pairwise(versions))


def test_build_metadata_does_not_affect_precedence_but_is_kept() -> None:
    assert parse_version("1.0.0+abc") == parse_version("1.0.0")
    assert str(parse_version("1.0.0+abc")) == "1.0.0+abc"


def test_leading_v_is_accepted_and_folder_names_are_v_prefixed() -> None:
    assert parse_version("v1.2.3").folder == "v1.2.3"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.2",
        "01.2.3",
        "1.2.3-",
        "1.2.3-01",
        "../1.2.3",
        "1.2.3/../../x",
        "1.2.3-a..b",
        "1.2.3\\x",
        " ",
        "1.2.3-" + "a" * 40,
    ],
)
def test_invalid_and_path_escaping_versions_are_refused(text: str) -> None:
    with pytest.raises(InvalidVersionError, match="invalid version"):
        parse_version(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_and_never_contains_a_path(text: str) -> None:
    try:
        version = parse_version(text)
    except InvalidVersionError:
        return
    assert "/" not in version.folder and "\\" not in version.folder and ".." not in version.folder


@settings(max_examples=100, deadline=None)
@given(
    st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
)
def test_order_matches_numeric_tuples(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va, vb = parse_version(".".join(map(str, a))), parse_version(".".join(map(str, b)))
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
