"""mirror.services.tag_lists.paginate: the tag list the cache serves when the upstream cannot."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from mirror.services.tag_lists import TagPage, paginate

REPO = "library/alpine"
TAGS = ["3.19", "latest", "3.18", "edge", "3.20"]  # as the store hands them over: unsorted
NEXT_LINK = re.compile(
    r'^</v2/(?P<repo>[^?]+)/tags/list\?n=(?P<n>\d+)&last=(?P<last>[^>]+)>; rel="next"$'
)


def tags_of(page: TagPage) -> list[str]:
    body = json.loads(page.body)
    assert body["name"] == REPO
    tags: list[str] = body["tags"]
    return tags


def test_all_tags_sorted_without_n_or_last() -> None:
    page = paginate(REPO, TAGS, None, None, stale=False)
    assert tags_of(page) == ["3.18", "3.19", "3.20", "edge", "latest"]
    assert page.link is None
    assert page.stale is False


def test_the_stale_flag_is_passed_on() -> None:
    assert paginate(REPO, TAGS, None, None, stale=True).stale is True


def test_n_limits_the_page_and_links_to_the_next() -> None:
    page = paginate(REPO, TAGS, 2, None, stale=True)
    assert tags_of(page) == ["3.18", "3.19"]
    assert page.link == '</v2/library/alpine/tags/list?n=2&last=3.19>; rel="next"'


def test_last_starts_after_that_tag() -> None:
    page = paginate(REPO, TAGS, 2, "3.19", stale=True)
    assert tags_of(page) == ["3.20", "edge"]
    assert page.link == '</v2/library/alpine/tags/list?n=2&last=edge>; rel="next"'
    assert tags_of(paginate(REPO, TAGS, None, "3.20", stale=True)) == ["edge", "latest"]


def test_last_need_not_be_a_known_tag() -> None:
    assert tags_of(paginate(REPO, TAGS, None, "3.185", stale=True)) == [
        "3.19",
        "3.20",
        "edge",
        "latest",
    ]
    assert tags_of(paginate(REPO, TAGS, None, "zzz", stale=True)) == []


def test_the_last_page_has_no_link() -> None:
    page = paginate(REPO, TAGS, 2, "3.20", stale=True)
    assert tags_of(page) == ["edge", "latest"]
    assert page.link is None
    assert paginate(REPO, TAGS, 5, None, stale=True).link is None
    assert paginate(REPO, TAGS, 50, None, stale=True).link is None


def test_n_zero_is_an_empty_page_without_a_link() -> None:
    # A next link from an empty page would point at the same page again, forever.
    page = paginate(REPO, TAGS, 0, None, stale=True)
    assert tags_of(page) == []
    assert page.link is None


def test_no_tags() -> None:
    page = paginate(REPO, [], 3, None, stale=True)
    assert tags_of(page) == []
    assert page.link is None


# Property: following the links from the first page lists every tag once, in order.

TAG_FIRST = "abcxyzABCXYZ0189_"
tags = st.builds(str.__add__, st.sampled_from(TAG_FIRST), st.text(TAG_FIRST + ".-", max_size=12))


@given(st.lists(tags, unique=True, max_size=30), st.integers(1, 8))
def test_following_next_links_lists_every_tag_once_in_order(known: list[str], n: int) -> None:
    seen: list[str] = []
    last: str | None = None
    for _ in range(len(known) + 1):
        page = paginate(REPO, known, n, last, stale=True)
        page_tags = tags_of(page)
        assert len(page_tags) <= n
        seen += page_tags
        if page.link is None:
            break
        link = NEXT_LINK.match(page.link)
        assert link is not None
        assert (link["repo"], int(link["n"])) == (REPO, n)
        last = link["last"]
    else:
        raise AssertionError("the next links never ended")
    assert seen == sorted(known)
