"""ClaimX sample traffic and the world that answers it: API answers in the API's own JSON shapes,
webhook events for all ten event types, for ``claimsflow run --generate N`` and the tests.

Builders (``project_export``, ``media_item``, ``task_assignment``, ``video_report``) make one
answer each; :func:`generate` makes a consistent set of events and world.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

API_BASE = "https://www.claimxperience.com/service/cxedirest"
LINK_LIFETIME_MS = 86_400_000


def project_export(
    project_id: int, *, mfn: str | None = None, wrapped: bool = True, **extra: Any
) -> dict[str, Any]:
    """A ``GET /export/project/{id}`` answer (wrapped in ``data`` as ClaimX usually sends it)."""
    project: dict[str, Any] = {
        "projectId": project_id,
        "projectNumber": f"CLM-2026-{project_id % 100000:05d}",
        "mfn": mfn or f"MFN{project_id}",
        "secondaryNumber": f"S{project_id}",
        "createdDate": "2026-02-14T15:04:05Z",
        "status": "OPEN",
        "dateOfLoss": "2026-02-10T00:00:00Z",
        "typeOfLoss": "Water",
        "causeOfLoss": "Pipe burst",
        "lossDescription": "Kitchen flooded",
        "customerInformation": {
            "firstName": "Pat",
            "lastName": "Doe",
            "emails": [
                {"emailAddress": f"other{project_id}@example.com", "primary": False},
                {"emailAddress": f"pat{project_id}@example.com", "primary": True},
            ],
            "phones": [{"phoneNumber": "5551234567", "phoneCountryCode": 1}],
        },
        "address": {
            "street1": "1 Main St",
            "street2": None,
            "city": "Denver",
            "stateProvince": "CO",
            "zipPostcode": "80202",
            "county": "Denver",
            "country": "US",
        },
        "yearBuilt": 1998,
        "squareFootage": 1850.5,
        "customAttribute1": "a1",
        "dateReceived": "2026-02-14T15:05:00Z",
    }
    project.update(extra)
    data = {
        "project": project,
        "teamMembers": [{"userName": f"rep{project_id}@carrier.example.com", "mfn": project["mfn"]}],
        "companyName": "Carrier Mutual",
    }
    return {"data": data} if wrapped else data


def media_item(
    media_id: int,
    *,
    name: str = "kitchen_01.jpg",
    size: int = 4096,
    link: str | None = None,
    signed_at: datetime | None = None,
    lifetime_ms: int = LINK_LIFETIME_MS,
    task_assignment_id: int | None = None,
) -> dict[str, Any]:
    """One media item of ``GET /export/project/{id}/media``; the link answers 302 to S3."""
    if link is None:
        stamp = int((signed_at or datetime.now(UTC)).timestamp() * 1000)
        link = (
            f"{API_BASE}/media/{media_id}?systemDate={stamp}&expires={lifetime_ms}"
            f"&sign={media_id:x}deadbeef&size={size}"
        )
    return {
        "mediaID": media_id,
        "taskAssignmentId": task_assignment_id,
        "mediaType": name.rsplit(".", 1)[-1] if "." in name else None,
        "mediaName": name,
        "mediaDescription": "Kitchen overview",
        "mediaComment": None,
        "latitude": "39.74",
        "longitude": "-104.99",
        "gpsSource": "EXIF",
        "takenDate": "2026-02-14T14:55:00Z",
        "fullDownloadLink": link,
        "expiresAt": "2026-02-15T15:04:05Z",
    }


def task_assignment(
    assignment_id: int, project_id: int, *, task_id: int = 27019, modified_date: str = "2026-01-05T10:00:00Z"
) -> dict[str, Any]:
    """A ``GET /customTasks/assignment/{id}?full=true`` answer."""
    return {
        "assignmentId": assignment_id,
        "taskId": task_id,
        "taskName": "Cabinet inspection",
        "formId": "F-77",
        "projectId": project_id,
        "assigneeId": 9001,
        "assignorId": 9002,
        "assignor": "assignor@carrier.example.com",
        "dateAssigned": "2026-02-14T15:10:00Z",
        "dateCompleted": None,
        "status": "ASSIGNED",
        "stpEnabled": "true",
        "mfn": f"MFN{project_id}",
        "xactimateExportable": False,
        "url": f"https://www.claimxperience.com/tasks/{assignment_id}",
        "customTask": {
            "taskId": task_id,
            "compId": 12,
            "name": "Cabinet inspection",
            "description": "Inspect the cabinets",
            "formId": "F-77",
            "formName": "Cabinet form",
            "enabled": True,
            "default": False,
            "isManualDelivery": False,
            "isExternalLinkDelivery": True,
            "allowReSubmit": "yes",
            "modifiedBy": "admin",
            "modifiedById": 5,
            "modifiedDate": modified_date,
        },
        "externalLinkData": {
            "linkId": assignment_id * 10,
            "linkCode": f"LC{assignment_id}",
            "url": f"https://www.claimxperience.com/ext/{assignment_id}?code=secret{assignment_id}",
            "email": f"holder{project_id}@example.com",
            "notificationAccessMethod": "EMAIL",
            "countryId": 1,
            "stateId": 6,
        },
        "response": {"groups": []},
    }


def video_report(project_id: int, collaboration_id: int, *, others: int = 1) -> dict[str, Any]:
    """A ``POST /data`` VIDEO_COLLABORATION report: the project's item plus ``others`` for other claims."""
    items = [
        {
            "videoCollaborationId": collaboration_id + n + 1,
            "claimId": project_id + n + 1,
            "claimNumber": f"OTHER-{n}",
            "numberOfVideos": 1,
        }
        for n in range(others)
    ]
    items.append(
        {
            "videoCollaborationId": collaboration_id,
            "claimId": project_id,
            "mfn": f"MFN{project_id}",
            "claimNumber": f"CLM-2026-{project_id % 100000:05d}",
            "policyNumber": "POL-1",
            "emailUserName": f"rep{project_id}@carrier.example.com",
            "claimRepFirstName": "Sam",
            "claimRepLastName": "Roe",
            "numberOfVideos": 2,
            "numberOfPhotos": 5,
            "numberOfViewers": 3,
            "sessionCount": 1,
            "totalTimeSeconds": 612.5,
            "totalTime": "00:10:12",
            "createdDate": "2026-02-14T16:00:00Z",
            "companyId": 77,
            "companyName": "Carrier Mutual",
            "guid": f"g-{collaboration_id}",
        }
    )
    return {"data": items}


def claimx_body(
    event_type: str, project_id: int | str, ingested_at: str | None = "2026-02-14T15:04:05Z", **ids: Any
) -> str:
    """One webhook body (camelCase, as ClaimX sends it)."""
    body: dict[str, Any] = {"eventType": event_type, "projectId": project_id}
    if ingested_at is not None:
        body["ingestedAt"] = ingested_at
    body.update(ids)
    return json.dumps(body)


# One event in four is an awkward case, cycling through these.
SPECIAL_CASES: tuple[str, ...] = (
    "flaky_api",
    "unknown_project",
    "missing_media",
    "bad_task_id",
    "forbidden_link",
    "bad_extension",
    "private_redirect",
    "unknown_type",
)


def generate(count: int, *, seed: int = 11, now: datetime | None = None) -> tuple[list[str], dict[str, Any]]:
    """``count`` ClaimX webhook bodies over all ten event types, and the world that answers them.

    The mix: mostly file, task and project events of a few dozen projects; redelivered duplicates,
    bodies that are not events, and one event in four an awkward case (a flaky API answering 503
    twice, an unknown project, a media id the API does not list, a non-numeric task id, a media
    link answering 403 once, a file type that is not allowed, a link redirecting to a private
    address, an unknown event type). Deterministic for a given seed.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    claimx: dict[str, Any] = {"projects": {}, "media": {}, "tasks": {}, "video": {}}
    faults: list[dict[str, Any]] = []
    bodies: list[str] = []
    projects = [5_000_000 + n for n in range(max(2, count // 5))]
    for pid in projects:
        claimx["projects"][str(pid)] = project_export(pid, wrapped=rng.random() < 0.8)
        claimx["media"][str(pid)] = []
    flaky = projects[0]
    faults.append({"path_contains": f"/export/project/{flaky}", "statuses": [503, 503]})
    media_seq = 90_000_000
    special_index = 0

    def file_event(pid: int, at: str, *, name: str | None = None, link: str | None = None) -> str:
        nonlocal media_seq
        media_seq += 1
        name = name or rng.choice(
            ["kitchen.jpg", "roof photo.png", "../estimate.pdf", "clip.mp4", "Wall #2.JPG"]
        )
        size = rng.choice([2048, 40_000, 300_000, 1_500_000])
        claimx["media"][str(pid)].append(
            media_item(media_seq, name=name, size=size, signed_at=now, link=link)
        )
        return claimx_body("PROJECT_FILE_ADDED", pid, at, mediaId=media_seq)

    for index in range(count):
        roll = rng.random()
        if bodies and roll < 0.05:
            bodies.append(rng.choice(bodies))  # a redelivered duplicate
            continue
        if roll < 0.08:
            bodies.append(
                rng.choice(["{broken", '{"eventType": "PROJECT_CREATED"}', "[]", '{"projectId": 1}'])
            )
            continue
        pid = rng.choice(projects[1:]) if len(projects) > 1 else projects[0]
        at = (now - timedelta(minutes=rng.randrange(0, 600), seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if roll < 0.33:
            case = SPECIAL_CASES[special_index % len(SPECIAL_CASES)]
            special_index += 1
            bodies.append(_special(case, pid, flaky, at, index, file_event, faults))
            continue
        kind = rng.choices(
            ["file", "created", "mfn", "task", "holder", "xa", "video"], weights=[45, 10, 6, 15, 10, 5, 9]
        )[0]
        if kind == "file":
            bodies.append(file_event(pid, at))
        elif kind == "created":
            bodies.append(claimx_body("PROJECT_CREATED", pid, at))
        elif kind == "mfn":
            bodies.append(claimx_body("PROJECT_MFN_ADDED", pid, at, masterFileName=f"MFN{pid}"))
        elif kind == "task":
            aid = 5_400_000 + index
            claimx["tasks"][str(aid)] = task_assignment(aid, pid, task_id=rng.choice([27019, 1234, 555]))
            event = rng.choice(["CUSTOM_TASK_ASSIGNED", "CUSTOM_TASK_COMPLETED"])
            bodies.append(claimx_body(event, pid, at, taskAssignmentId=aid))
        elif kind == "holder":
            event = rng.choice(["POLICYHOLDER_INVITED", "POLICYHOLDER_JOINED"])
            bodies.append(claimx_body(event, pid, at))
        elif kind == "xa":
            bodies.append(claimx_body("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL", pid, at))
        else:
            vid = 700_000 + index
            claimx["video"][str(pid)] = video_report(pid, vid)
            event = rng.choice(["VIDEO_COLLABORATION_INVITE_SENT", "VIDEO_COLLABORATION_COMPLETED"])
            bodies.append(claimx_body(event, pid, at, videoCollaborationId=vid))
    return bodies, {"claimx": claimx, "faults": faults}


def _special(
    case: str,
    pid: int,
    flaky: int,
    at: str,
    index: int,
    file_event: Any,
    faults: list[dict[str, Any]],
) -> str:
    if case == "flaky_api":
        return claimx_body("PROJECT_CREATED", flaky, at)
    if case == "unknown_project":
        return claimx_body("PROJECT_CREATED", 4_000_000 + index, at)
    if case == "missing_media":
        return claimx_body("PROJECT_FILE_ADDED", pid, at, mediaId=80_000_000 + index)
    if case == "bad_task_id":
        return claimx_body("CUSTOM_TASK_ASSIGNED", pid, at, taskAssignmentId=f"T-{index}")
    if case == "forbidden_link":
        body = file_event(pid, at, name="forbidden.jpg")
        faults.append({"path_contains": f"/media/{json.loads(body)['mediaId']}", "statuses": [403]})
        return str(body)
    if case == "bad_extension":
        return str(file_event(pid, at, name="installer.exe"))
    if case == "private_redirect":
        body = file_event(pid, at, name="redirected.png")
        target = "https://169.254.169.254/latest/meta-data/x.png"
        faults.append({"path_contains": f"/media/{json.loads(body)['mediaId']}", "redirect": target})
        return str(body)
    return claimx_body("PROJECT_ARCHIVED", pid, at)
