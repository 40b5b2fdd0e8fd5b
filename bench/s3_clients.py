"""Streaming throughput of two S3 client libraries against one S3 server (SeaweedFS in the tests).

    .venv/bin/python bench/s3_clients.py [--mib 256] [--runs 3]   # starts SeaweedFS itself
    .venv/bin/python bench/s3_clients.py --endpoint http://127.0.0.1:PORT --key K --secret S

Per library: a multipart upload of an object fed 1 MiB at a time as a fill receives it, a whole
GET streamed, and ranged GETs (8 ranges of 1/8 of the object) streamed. Each figure is MiB/s,
best of --runs. The bucket `bench` is created when missing. obstore is not a dependency of the
mirror: `.venv/bin/pip install obstore` before comparing (or pass --only aiobotocore).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024
PART = 8 * 1024 * 1024
BUCKET = "bench"


async def arriving(total: int) -> AsyncIterator[bytes]:
    """The object 1 MiB at a time, as a fill hands it on (random bytes: nothing compresses)."""
    block = os.urandom(CHUNK)
    for _ in range(total // CHUNK):
        yield block


async def timed(label: str, size: int, runs: int, action: Callable[[], Awaitable[int]]) -> None:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        moved = await action()
        best = min(best, time.perf_counter() - started)
        assert moved == size, f"{label}: moved {moved} of {size} bytes"
    print(f"{label:<34} {size / CHUNK / best:8.0f} MiB/s")


async def bench_aiobotocore(args: argparse.Namespace, size: int) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        signature_version="s3v4",
        max_pool_connections=16,
        # botocore adds a CRC32 of every part by default; the digest check is ours.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id=args.key,
        aws_secret_access_key=args.secret,
        config=config,
    ) as s3:
        with contextlib.suppress(s3.exceptions.ClientError):
            await s3.create_bucket(Bucket=BUCKET)
        key = "aiobotocore/object"

        async def upload() -> int:
            created = await s3.create_multipart_upload(Bucket=BUCKET, Key=key)
            upload_id = created["UploadId"]
            parts: list[Any] = []
            pending: list[asyncio.Task[None]] = []
            buffer = bytearray()
            total = 0

            async def send(number: int, body: bytes) -> None:
                answer = await s3.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})

            async for chunk in arriving(size):
                buffer += chunk
                total += len(chunk)
                if len(buffer) >= PART:
                    # Up to 4 parts in flight while later bytes arrive.
                    pending = [t for t in pending if not t.done()]
                    if len(pending) >= 4:
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    pending.append(
                        asyncio.create_task(send(len(parts) + len(pending) + 1, bytes(buffer)))
                    )
                    buffer.clear()
            await asyncio.gather(*pending)
            if buffer:
                await send(len(parts) + 1, bytes(buffer))
            parts.sort(key=lambda p: p["PartNumber"])
            await s3.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            return total

        async def whole() -> int:
            answer = await s3.get_object(Bucket=BUCKET, Key=key)
            moved = 0
            async for chunk in answer["Body"].iter_chunks(CHUNK):
                moved += len(chunk)
            return moved

        async def ranged() -> int:
            moved = 0
            step = size // 8
            for start in range(0, size, step):
                answer = await s3.get_object(
                    Bucket=BUCKET, Key=key, Range=f"bytes={start}-{start + step - 1}"
                )
                async for chunk in answer["Body"].iter_chunks(CHUNK):
                    moved += len(chunk)
            return moved

        await timed("aiobotocore multipart upload", size, args.runs, upload)
        await timed("aiobotocore whole GET", size, args.runs, whole)
        await timed("aiobotocore ranged GETs (8)", size, args.runs, ranged)


async def bench_obstore(args: argparse.Namespace, size: int) -> None:
    import obstore  # type: ignore[import-not-found, unused-ignore]
    from obstore.store import S3Store  # type: ignore[import-not-found, unused-ignore]

    store = S3Store(
        BUCKET,
        endpoint=args.endpoint,
        region="us-east-1",
        access_key_id=args.key,
        secret_access_key=args.secret,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    key = "obstore/object"

    async def upload() -> int:
        total = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal total
            async for chunk in arriving(size):
                total += len(chunk)
                yield chunk

        await obstore.put_async(store, key, counted(), chunk_size=PART, max_concurrency=4)
        return total

    async def whole() -> int:
        answer = await obstore.get_async(store, key)
        moved = 0
        async for chunk in answer.stream(min_chunk_size=CHUNK):
            moved += len(chunk)
        return moved

    async def ranged() -> int:
        moved = 0
        step = size // 8
        for start in range(0, size, step):
            answer = await obstore.get_async(store, key, options={"range": (start, start + step)})
            async for chunk in answer.stream(min_chunk_size=CHUNK):
                moved += len(chunk)
        return moved

    await timed("obstore multipart upload", size, args.runs, upload)
    await timed("obstore whole GET", size, args.runs, whole)
    await timed("obstore ranged GETs (8)", size, args.runs, ranged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", help="an S3 server; default: start SeaweedFS (weed mini)")
    parser.add_argument("--key")
    parser.add_argument("--secret")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["aiobotocore", "obstore"])
    args = parser.parse_args()
    size = args.mib * CHUNK
    if args.endpoint is not None:
        run(args, size)
        return
    # The tests' own SeaweedFS fixture: free ports on 127.0.0.1, a temp folder, stopped after.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.seaweedfs import SeaweedFS

    with tempfile.TemporaryDirectory() as folder:
        server = SeaweedFS(Path(folder))
        server.start()
        try:
            server.create_bucket(BUCKET)
            args.endpoint, args.key, args.secret = (
                server.endpoint,
                server.access_key,
                server.secret_key,
            )
            run(args, size)
        finally:
            server.stop()


def run(args: argparse.Namespace, size: int) -> None:
    if args.only != "obstore":
        asyncio.run(bench_aiobotocore(args, size))
    if args.only != "aiobotocore":
        asyncio.run(bench_obstore(args, size))


if __name__ == "__main__":
    main()
