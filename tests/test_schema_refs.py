"""The index records what each manifest references and when clients last pulled a tag or a
manifest: the facts purges, retention and the catalog work from. An index written before
those existed is upgraded in place, its references read from the stored manifests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import aiohttp
from fakes import FakeClock, FakeHub
from fakes.client import MakeMirror

from mirror.reference import Digest
from mirror.stores.schema import MIGRATIONS

REPO = "library/alpine"


def digest_of(body: bytes) -> str:
    return str(Digest.of(body))


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(row) for row in db.execute(sql).fetchall()]
    finally:
        db.close()


async def test_an_index_from_schema_1_gains_the_references_of_its_manifests(
    make_mirror: MakeMirror, tmp_path: Path
) -> None:
    config = "sha256:" + "c" * 64
    layers = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    image = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"digest": config, "size": 1},
            "layers": [{"digest": d, "size": 1} for d in layers],
        }
    ).encode()
    index = json.dumps(
        {"schemaVersion": 2, "manifests": [{"digest": digest_of(image), "size": len(image)}]}
    ).encode()
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "mirror.db")
    db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    for body in (image, index, b"not json"):
        db.execute(
            "INSERT INTO manifests VALUES (?, 'application/json', ?, 5.0)", (digest_of(body), body)
        )
    db.execute(
        "INSERT INTO tags VALUES ('docker.io', ?, '3.19', ?, 'x', 7.0, 9.0)",
        (REPO, digest_of(index)),
    )
    db.execute("INSERT INTO links VALUES ('docker.io', ?, ?)", (REPO, digest_of(index)))
    db.execute("INSERT INTO links VALUES ('docker.io', ?, ?)", (REPO, layers[0]))
    db.commit()
    db.close()

    mirror = await make_mirror(storage_path=data)
    await mirror.close()

    path = data / "mirror.db"
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert set(rows(path, "SELECT parent, child FROM refs")) == {
        (digest_of(index), digest_of(image)),
        (digest_of(image), config),
        (digest_of(image), layers[0]),
        (digest_of(image), layers[1]),
    }
    # A known tag counts as pulled when it was resolved; a manifest link when it was stored,
    # a blob's link carries no pull time (blobs keep their own last access).
    assert rows(path, "SELECT pulled_at FROM tags") == [(7.0,)]
    assert dict(rows(path, "SELECT digest, pulled_at FROM links")) == {  # type: ignore[arg-type]
        digest_of(index): 5.0,
        layers[0]: None,
    }


async def test_pulls_of_tags_and_digests_are_recorded(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "3.19", [b"layer one", b"layer two"])
    data = tmp_path / "data"
    mirror = await make_mirror(storage_path=data)
    resolved_at = clock.now
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
    clock.advance(100)
    async with session.head(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200  # a hit: the tag is fresh
    tag_pulled = clock.now
    clock.advance(100)
    async with session.get(
        mirror.make_url(f"/v2/{REPO}/manifests/{image.manifest_digest}")
    ) as resp:
        assert resp.status == 200
    await mirror.close()  # the janitor flushes the batched pull times as the mirror stops

    path = data / "mirror.db"
    assert rows(path, "SELECT fetched_at, pulled_at FROM tags") == [(resolved_at, tag_pulled)]
    manifest_links = rows(path, "SELECT digest, pulled_at FROM links WHERE pulled_at IS NOT NULL")
    assert manifest_links == [(image.manifest_digest, clock.now)]
    references = {child for (child,) in rows(path, "SELECT child FROM refs")}
    assert references == {image.config_digest, *image.layer_digests}
