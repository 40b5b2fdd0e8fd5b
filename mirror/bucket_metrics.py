"""The object store's side of the metrics: requests to the bucket by operation and status,
their latency, and bytes each way (with `backend = "s3"`; zero on the filesystem backend)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# What the S3 backend asks of a bucket; pre-created so a dashboard has every series at once.
OPERATIONS = (
    "HeadBucket",
    "HeadObject",
    "GetObject",
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListMultipartUploads",
    "DeleteObject",
    "DeleteObjects",
    "ListObjectsV2",
)
STATUSES = ("2xx", "3xx", "4xx", "5xx", "error")  # error: no answer (refused, reset, timeout)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class BucketMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mirror_bucket_requests_total",
            "Requests to the S3 bucket, by operation and status class (error: no answer).",
            ["operation", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "mirror_bucket_request_duration_seconds",
            "Time until the bucket's answer was parsed (a GET: its headers).",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.bytes = Counter(
            "mirror_bucket_bytes_total",
            "Bytes sent to the bucket (out) and announced by it for reads (in).",
            ["direction"],
            registry=registry,
        )
        self.doomed = Gauge(
            "mirror_bucket_doomed_objects",
            "Objects retention or eviction removed from this replica's index, deleted from the"
            " shared bucket once storage.s3.delete_grace has passed (unless a replica reads them).",
            registry=registry,
        )
        self.blob_bytes = Gauge(
            "mirror_bucket_blob_bytes",
            "Bytes of blobs in the shared bucket (under the prefix, less those doomed) when"
            " this replica last listed them to evict (storage.max_size); 0 on the others.",
            registry=registry,
        )
        for operation in OPERATIONS:
            self.duration.labels(operation)
            for status in STATUSES:
                self.requests.labels(operation, status)
        for direction in ("in", "out"):
            self.bytes.labels(direction)

    def answered(self, operation: str, status: int, seconds: float) -> None:
        self.requests.labels(operation, f"{status // 100}xx").inc()
        self.duration.labels(operation).observe(seconds)

    def failed(self, operation: str, seconds: float) -> None:
        self.requests.labels(operation, "error").inc()
        self.duration.labels(operation).observe(seconds)
