"""Realistic sample XACT traffic for ``claimsflow run --generate N``.

The mix mirrors production: mostly documents with one to three attachments, some FNOL and
estimate packages, plus the awkward cases a pipeline must survive: redelivered duplicates,
bodies that are not JSON or not events, events without an assignment, URLs that are rejected
(private address, disallowed extension), an expired presigned URL, a 404, a flaky source (503
twice, then fine) and a source that always fails. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

S3_HOST = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
XACT_TYPE = "verisk.claims.property.xn."
EXTENSIONS = ("pdf", "jpg", "png", "xml", "docx", "esx", "mp4")
FLAKY_MARKER = "flaky-source"
FAILING_MARKER = "always-503"
MISSING_MARKER = "gone-404"


# One event in three carries one awkward attachment, cycling through these cases.
SPECIAL_CASES: tuple[str | None, ...] = (
    "flaky",
    None,
    None,
    "failing",
    None,
    None,
    "missing",
    None,
    None,
    "expired",
    None,
    None,
    "private_address",
    None,
    None,
    "bad_extension",
    None,
    None,
)


def _special_url(
    case: str, assignment: str, index: int, now: datetime, signed_at: datetime, rng: random.Random
) -> str:
    folder = f"/exports/{assignment}"
    if case == "flaky":
        return _presign(f"{folder}/{FLAKY_MARKER}-{index}.pdf", signed_at, 604800, rng)
    if case == "failing":
        return _presign(f"{folder}/{FAILING_MARKER}-{index}.pdf", signed_at, 604800, rng)
    if case == "missing":
        return _presign(f"{folder}/{MISSING_MARKER}-{index}.pdf", signed_at, 604800, rng)
    if case == "expired":
        return _presign(f"{folder}/old-{index}.pdf", now - timedelta(days=9), 604800, rng)
    if case == "private_address":
        return f"https://169.254.169.254/latest/meta-data/{index}.txt"
    return _presign(f"{folder}/tool-{index}.exe", signed_at, 604800, rng)


def default_world() -> dict[str, Any]:
    """Faults the generated traffic relies on; a user's world file is merged over it."""
    return {
        "faults": [
            {"path_contains": FLAKY_MARKER, "statuses": [503, 503], "repeat": False},
            {"path_contains": FAILING_MARKER, "statuses": [503], "repeat": True},
            {"path_contains": MISSING_MARKER, "statuses": [404], "repeat": True},
        ]
    }


def _presign(path: str, signed_at: datetime, expires_seconds: int, rng: random.Random) -> str:
    stamp = signed_at.strftime("%Y%m%dT%H%M%SZ")
    signature = f"{rng.getrandbits(256):064x}"
    return (
        f"https://{S3_HOST}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={stamp}"
        f"&X-Amz-Expires={expires_seconds}&X-Amz-Signature={signature}"
    )


def generate(count: int, *, seed: int = 7, now: datetime | None = None) -> list[str]:
    """``count`` Event Hub bodies (JSON text, some deliberately broken)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    bodies: list[str] = []
    sent: list[str] = []
    for index in range(count):
        roll = rng.random()
        if sent and roll < 0.06:
            bodies.append(rng.choice(sent))  # redelivered duplicate
            continue
        if roll < 0.09:
            bodies.append(rng.choice(["{not json", "[1, 2, 3]", '{"type": "", "traceId": "x"}']))
            continue
        bodies.append(_event(index, rng, now, skip=roll < 0.12))
        sent.append(bodies[-1])
    return bodies


def _event(index: int, rng: random.Random, now: datetime, *, skip: bool) -> str:
    trace_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    assignment = f"A{rng.randrange(10**6):06d}"
    subtype = rng.choices(
        ["documentsReceived", "firstNoticeOfLossReceived", "estimatePackageReceived", "assignmentNoteAdded"],
        weights=[70, 10, 15, 5],
    )[0]
    occurred = now - timedelta(minutes=rng.randrange(0, 600))
    signed_at = now - timedelta(minutes=5)
    attachments: list[str] = []
    if subtype != "assignmentNoteAdded":
        for n in range(rng.choice([1, 1, 2, 3])):
            extension = rng.choice(EXTENSIONS)
            size = rng.choice([2048, 40_000, 250_000, 1_500_000])
            path = f"/exports/{assignment}/doc{index}_{n}.{extension}"
            attachments.append(_presign(path, signed_at, 604800, rng) + f"&size={size}")
        special = SPECIAL_CASES[index % len(SPECIAL_CASES)]
        if special is not None:
            attachments.append(_special_url(special, assignment, index, now, signed_at, rng))
    data: dict[str, Any] = {
        "carrierId": "CARR01",
        "description": f"{subtype} for {assignment}",
        "dateTime": (occurred - timedelta(hours=7)).strftime("%Y-%m-%d %H:%M:%S MDT"),
        "adm": {"coverageLoss": {"claimNumber": f"CLM-{occurred:%Y}-{rng.randrange(10**5):05d}"}},
        "contact": {
            "type": "Insured",
            "name": rng.choice(["Pat Doe", "Sam Roe", "Alex Poe"]),
            "contactMethods": {"email": {"address": f"insured{index}@example.com"}},
        },
        "attachments": attachments,
    }
    if not skip:
        data["assignmentId"] = assignment
    if subtype == "estimatePackageReceived":
        data["estimateVersion"] = str(rng.randrange(1, 4))
    event = {
        "type": XACT_TYPE + subtype,
        "version": rng.choice([1, "1"]),
        "utcDateTime": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ("traceId" if rng.random() < 0.9 else "trace_id"): trace_id,
        "data": json.dumps(data) if rng.random() < 0.8 else data,
    }
    return json.dumps(event)
