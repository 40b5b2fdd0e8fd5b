"""Usage reports in the bucket: `{prefix}usage/<replica>.json`, one per replica, rewritten at
each of its retention runs, read by every other before it removes anything.

A replica is named by a random id kept in its data folder (`replica-id`): a replica that
restarts on its folder goes on with its report; one on a fresh folder (a new pod with an
`emptyDir`) starts a new one, and the old report is removed once everything in it has aged
past `max_unused_age` (it can keep nothing by then).

A copied data folder would give two processes one id, each overwriting the other's report: a
replica that finds its report is not the one it last wrote takes a new id (and reads the old
report as another replica's).

A report's times are its writer's clock. One dated ahead of the reader's clock by more than
CLOCK_SKEW is ignored (it would keep what it names until then), and no use in a report is
later than the report itself.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mirror.stores.s3_blobs import S3Blobs
from mirror.stores.s3_parts import ERRORS
from mirror.stores.shared_index import CLOCK_SKEW
from mirror.stores.usage import Reports, Usage

log = logging.getLogger(__name__)

ID_FILE = "replica-id"
_ID = re.compile(r"[0-9a-f]{32}")  # what replica_id makes; anything else is made anew
MAX_REPORT_BYTES = 256 * 1024 * 1024  # far above any real report; a planted giant is refused


def replica_id(folder: Path, *, anew: bool = False) -> str:
    """This data folder's replica id, made at its first use (or `anew`)."""
    path = folder / ID_FILE
    try:
        found = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        found = ""
    if _ID.fullmatch(found) and not anew:
        return found
    made = uuid.uuid4().hex
    temp = folder / f"{ID_FILE}.tmp"
    temp.write_text(made + "\n", encoding="ascii")
    os.replace(temp, path)  # the folder is locked: no other process writes it meanwhile
    return made


class S3UsageBoard:
    def __init__(self, blobs: S3Blobs, folder: Path, *, evicts: bool = False) -> None:
        self._blobs = blobs
        self._folder = folder
        # storage.max_size is set here, and this replica's last attempt to evict went through
        # (bucket_eviction.py): the others wait for it when its id is the lowest.
        self.evicts = evicts
        self._replica: str | None = None
        self._folder_prefix = f"{blobs.config.prefix}usage/"
        self._etag: str | None = None  # of the report this process last wrote

    @property
    def replica(self) -> str:
        if self._replica is None:
            self._replica = replica_id(self._folder)
        return self._replica

    def _key(self, replica: str) -> str:
        return f"{self._folder_prefix}{replica}.json"

    async def publish(self, usage: Usage, now: float) -> float | None:
        """Write this replica's report; the bucket's clock minus this replica's (from the
        answer's Date header), or None (logged) when the bucket did not take it."""
        document = {
            "replica": self.replica,
            "written_at": now,
            "evicts": self.evicts,
            **usage.as_json(),
        }
        try:
            answer: Any = await self._blobs.client.put_object(
                Bucket=self._blobs.config.bucket,
                Key=self._key(self.replica),
                Body=json.dumps(document).encode(),
                ContentType="application/json",
            )
        except ERRORS as exc:
            log.warning("could not publish this replica's usage to the bucket: %s", exc)
            # It may have landed all the same (an answer lost to a timeout): what the bucket
            # holds next is not a copy's, and is not compared until this process writes again.
            self._etag = None
            return None
        self._etag = answer.get("ETag")
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return parsedate_to_datetime(date).timestamp() - now
        except (TypeError, ValueError):
            # The offset only orders blobs no report names: the clocks taken as one then.
            log.warning("the bucket's answer has no usable Date header (%r): offset 0", date)
            return 0.0

    async def others(
        self, now: float, stale_before: float, live_after: float, doomed_after: float
    ) -> Reports | None:
        """Every other replica's usage, merged; None when the bucket could not be read whole
        (retention and eviction then wait: they never remove on part of the picture). Reports
        written before `stale_before` are removed: nothing in them can keep anything. Those
        written since `live_after` name the replicas that evict; what those written before
        `doomed_after` list as doomed is not: their replica is gone and deletes nothing more."""
        reports = Reports(Usage())
        client = self._blobs.client
        bucket = self._blobs.config.bucket
        mine = self._key(self.replica)
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=self._folder_prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key == mine:
                        if self._etag is None or item.get("ETag") == self._etag:
                            continue
                        self._copied()  # another process wrote it: read as another's
                    report = await self._read(key)
                    if report is None:
                        continue
                    written_at, evictor, usage = report
                    if written_at > now + CLOCK_SKEW:
                        log.warning("ignoring usage report %s: written in the future", key)
                        continue
                    if written_at < stale_before:
                        await self._remove_stale(key)
                        continue
                    usage.clamp(written_at)
                    if written_at < doomed_after:
                        usage.doomed = set()  # still in the bucket: counted, chosen again
                    if evictor is not None and written_at >= live_after:
                        reports.evictors.add(evictor)
                    reports.usage.merge(usage)
        except ERRORS as exc:
            log.warning("could not read the replicas' usage from the bucket: %s", exc)
            return None
        return reports

    def _copied(self) -> None:
        log.error(
            "another process writes this replica's usage report (%s): its data folder was"
            " copied; this replica takes a new id",
            self.replica,
        )
        self._replica = replica_id(self._folder, anew=True)
        self._etag = None

    async def _read(self, key: str) -> tuple[float, str | None, Usage] | None:
        """A report, with the replica that evicts by it (None: not one), or None when it is
        gone meanwhile or does not parse (logged: a report that lies can only make retention
        keep or remove what it would anyway by age). Only a replica's own report, at
        `usage/<its id>.json` and naming that id, can make the others wait for it to evict:
        any other object there would sort below every real id."""
        try:
            answer: Any = await self._blobs.client.get_object(
                Bucket=self._blobs.config.bucket, Key=key
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body = answer["Body"]
        try:
            if int(answer.get("ContentLength") or 0) > MAX_REPORT_BYTES:
                log.warning("ignoring usage report %s: larger than %d bytes", key, MAX_REPORT_BYTES)
                return None
            data = await body.read()
        finally:
            body.close()
        try:
            document = json.loads(data)
            written_at = float(document["written_at"])
            if not math.isfinite(written_at):
                raise ValueError("written_at is not a time")
            name = key[len(self._folder_prefix) :].removesuffix(".json")
            own = key == self._key(name) and _ID.fullmatch(name) is not None
            evicts = own and document.get("replica") == name and document.get("evicts") is True
            return written_at, name if evicts else None, Usage.from_json(document)
        # RecursionError: nested deeper than the parser goes; OverflowError: a number too large.
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
            log.warning("ignoring usage report %s: %s", key, exc)
            return None

    async def _remove_stale(self, key: str) -> None:
        try:
            await self._blobs.client.delete_object(Bucket=self._blobs.config.bucket, Key=key)
        except ERRORS as exc:
            log.warning("could not remove the stale usage report %s: %s", key, exc)
