"""API answers → entity rows, one function per table. Lenient like the API: blank strings are
null, ids become text, numbers and flags are read from numbers or text, API timestamps stay ISO
text with ``Z`` written as ``+00:00``. Every row carries the event's trace id and timestamps
(:class:`Stamp`), so the same event always writes the same values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.lake.tables import Row
from shared.redact import redact_url

POLICYHOLDER = "POLICYHOLDER"
CLAIM_REP = "CLAIM_REP"
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every row of one event carries."""

    trace_id: str
    at: datetime  # the event's ingestedAt

    def row(self, **columns: Any) -> Row:
        return {**columns, "trace_id": self.trace_id, "created_at": self.at, "updated_at": self.at}

    def enriched(self, **columns: Any) -> Row:
        return {**self.row(**columns), "last_enriched_at": self.at}


# -- value helpers -------------------------------------------------------------------------


def text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    result = str(value).strip()
    return result or None


def ident(value: Any) -> str | None:
    """An id as text (``5486872``, ``"5486872"`` and ``5486872.0`` are one id)."""
    return text(value)


def integer(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    try:
        return int(str(value).strip())
    except ValueError:
        number = decimal(value)
        return int(number) if number is not None and number.is_integer() else None


def decimal(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if not isinstance(value, int | float) else float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    lowered = (text(value) or "").lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def timestamp_text(value: Any) -> str | None:
    result = text(value)
    return result.replace("Z", "+00:00") if result and result.endswith("Z") else result


def link(value: Any) -> str | None:
    """A URL kept without the values of its signature parameters."""
    result = text(value)
    return redact_url(result) if result else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- projects and contacts -------------------------------------------------------------------


def project_parts(export: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Any], Any]:
    """(project, team members, company name) of an unwrapped export answer."""
    project = export.get("project")
    if isinstance(project, Mapping):
        return project, _list(export.get("teamMembers")), export.get("companyName")
    return export, _list(export.get("teamMembers")), export.get("companyName")


def _email(item: Any) -> str | None:
    if isinstance(item, Mapping):
        return text(item.get("emailAddress") or item.get("email") or item.get("address"))
    return text(item)


def primary_email(customer: Mapping[str, Any]) -> str | None:
    emails = _list(customer.get("emails"))
    flagged = [e for e in emails if isinstance(e, Mapping) and flag(e.get("primary"))]
    for item in flagged + emails:
        address = _email(item)
        if address:
            return address
    return text(customer.get("email"))


def project_row(export: Mapping[str, Any], stamp: Stamp, project_id: str) -> Row:
    project, _, company = project_parts(export)
    customer = _dict(project.get("customerInformation"))
    address = _dict(project.get("address"))
    phones = _list(customer.get("phones"))
    phone = _dict(phones[0]) if phones else {}
    return stamp.enriched(
        project_id=ident(project.get("projectId")) or project_id,
        project_number=text(project.get("projectNumber")),
        master_file_name=text(project.get("mfn")),
        secondary_number=text(project.get("secondaryNumber")),
        created_date=timestamp_text(project.get("createdDate")),
        status=text(project.get("status")),
        date_of_loss=timestamp_text(project.get("dateOfLoss")),
        type_of_loss=text(project.get("typeOfLoss")),
        cause_of_loss=text(project.get("causeOfLoss")),
        loss_description=text(project.get("lossDescription")),
        customer_first_name=text(customer.get("firstName")),
        customer_last_name=text(customer.get("lastName")),
        custom_business_name=text(project.get("customBusinessName")),
        business_line_type=text(project.get("businessLineType")),
        year_built=integer(project.get("yearBuilt")),
        square_footage=decimal(project.get("squareFootage")),
        street1=text(address.get("street1")),
        street2=text(address.get("street2")),
        city=text(address.get("city")),
        state_province=text(address.get("stateProvince")),
        zip_postcode=text(address.get("zipPostcode")),
        county=text(address.get("county")),
        country=text(address.get("country")),
        primary_email=primary_email(customer),
        primary_phone=text(phone.get("phoneNumber")),
        primary_phone_country_code=text(phone.get("phoneCountryCode")),
        date_received=timestamp_text(project.get("dateReceived")),
        date_contacted=timestamp_text(project.get("dateContacted")),
        planned_inspection_date=timestamp_text(project.get("plannedInspectionDate")),
        date_inspected=timestamp_text(project.get("dateInspected")),
        appointment_date=timestamp_text(project.get("appointmentDate")),
        custom_attribute1=text(project.get("customAttribute1")),
        custom_attribute2=text(project.get("customAttribute2")),
        custom_attribute3=text(project.get("customAttribute3")),
        custom_external_unique_id=text(project.get("customExternalUniqueId")),
        company_name=text(company),
    )


def contact_rows(export: Mapping[str, Any], stamp: Stamp, project_id: str) -> list[Row]:
    """The policyholder (when there is an email) and one claim rep per team member user name."""
    project, team, _ = project_parts(export)
    customer = _dict(project.get("customerInformation"))
    phones = _list(customer.get("phones"))
    phone = _dict(phones[0]) if phones else {}
    rows: list[Row] = []
    email = primary_email(customer)
    if email:
        rows.append(
            stamp.enriched(
                project_id=project_id,
                contact_email=email,
                contact_type=POLICYHOLDER,
                first_name=text(customer.get("firstName")),
                last_name=text(customer.get("lastName")),
                phone_number=text(phone.get("phoneNumber")),
                phone_country_code=text(phone.get("phoneCountryCode")),
                is_primary_contact=True,
                master_file_name=text(project.get("mfn")),
                created_date=stamp.at.date(),
            )
        )
    for member in team:
        member = _dict(member)
        user = text(member.get("userName"))
        if not user:
            continue
        rows.append(
            stamp.enriched(
                project_id=project_id,
                contact_email=user,
                contact_type=CLAIM_REP,
                first_name=text(member.get("firstName")),
                last_name=text(member.get("lastName")),
                is_primary_contact=False,
                master_file_name=text(member.get("mfn")),
                created_date=stamp.at.date(),
            )
        )
    return rows


# -- media, tasks, video ---------------------------------------------------------------------


def media_row(item: Mapping[str, Any], stamp: Stamp, project_id: str) -> Row:
    return stamp.enriched(
        media_id=ident(item.get("mediaID") or item.get("mediaId")),
        project_id=project_id,
        task_assignment_id=ident(item.get("taskAssignmentId")),
        file_type=text(item.get("mediaType")),
        file_name=text(item.get("mediaName")),
        media_description=text(item.get("mediaDescription")),
        media_comment=text(item.get("mediaComment")),
        latitude=decimal(item.get("latitude")),
        longitude=decimal(item.get("longitude")),
        gps_source=text(item.get("gpsSource")),
        taken_date=timestamp_text(item.get("takenDate")),
        full_download_link=link(item.get("fullDownloadLink")),
        expires_at=timestamp_text(item.get("expiresAt")),
    )


def task_row(assignment: Mapping[str, Any], stamp: Stamp, project_id: str) -> Row:
    return stamp.enriched(
        assignment_id=ident(assignment.get("assignmentId")),
        task_id=ident(assignment.get("taskId")),
        task_name=text(assignment.get("taskName")),
        form_id=ident(assignment.get("formId")),
        project_id=ident(assignment.get("projectId")) or project_id,
        assignee_id=ident(assignment.get("assigneeId")),
        assignor_id=ident(assignment.get("assignorId")),
        assignor_email=text(assignment.get("assignor")),
        date_assigned=timestamp_text(assignment.get("dateAssigned")),
        date_completed=timestamp_text(assignment.get("dateCompleted")),
        cancelled_date=timestamp_text(assignment.get("cancelledDate")),
        cancelled_by_resource_id=ident(assignment.get("cancelledByResourceId")),
        status=text(assignment.get("status")),
        pdf_project_media_id=ident(assignment.get("pdfProjectMediaId")),
        date_exported=timestamp_text(assignment.get("dateExported")),
        form_response_id=ident(assignment.get("formResponseId")),
        stp_enabled=flag(assignment.get("stpEnabled")),
        stp_started_date=timestamp_text(assignment.get("stpStartedDate")),
        mfn=text(assignment.get("mfn")),
        xactimate_exportable=flag(assignment.get("xactimateExportable")),
        fraud_language_accepted_date=timestamp_text(assignment.get("fraudLanguageAcceptedDate")),
        resubmit_task_assignment_id=ident(assignment.get("resubmitTaskAssignmentId")),
        task_url=link(assignment.get("url")),
    )


def template_row(template: Mapping[str, Any], stamp: Stamp) -> Row:
    return stamp.enriched(
        task_id=ident(template.get("taskId")),
        comp_id=ident(template.get("compId")),
        name=text(template.get("name")),
        description=text(template.get("description")),
        form_id=ident(template.get("formId")),
        form_name=text(template.get("formName")),
        enabled=flag(template.get("enabled")),
        is_default=flag(template.get("default")),
        is_manual_delivery=flag(template.get("isManualDelivery")),
        is_external_link_delivery=flag(template.get("isExternalLinkDelivery")),
        provide_portal_access=flag(template.get("providePortalAccess")),
        notify_assigned_send_recipient=flag(template.get("notifyAssignedSendRecipient")),
        notify_assigned_send_recipient_sms=flag(template.get("notifyAssignedSendRecipientSms")),
        notify_assigned_subject=text(template.get("notifyAssignedSubject")),
        notify_task_completed=flag(template.get("notifyTaskCompleted")),
        notify_completed_subject=text(template.get("notifyCompletedSubject")),
        allow_resubmit=flag(template.get("allowReSubmit")),
        auto_generate_pdf=flag(template.get("autoGeneratePdf")),
        modified_by=text(template.get("modifiedBy")),
        modified_by_id=ident(template.get("modifiedById")),
        modified_date=timestamp_text(template.get("modifiedDate")),
    )


def external_link_row(data: Mapping[str, Any], stamp: Stamp, assignment_id: str, project_id: str) -> Row:
    return stamp.enriched(
        link_id=ident(data.get("linkId")),
        assignment_id=assignment_id,
        project_id=project_id,
        link_code=text(data.get("linkCode")),
        url=link(data.get("url")),
        notification_access_method=text(data.get("notificationAccessMethod")),
        country_id=ident(data.get("countryId")),
        state_id=ident(data.get("stateId")),
        created_date=timestamp_text(data.get("createdDate")),
        accessed_count=integer(data.get("accessedCount")),
        last_accessed=timestamp_text(data.get("lastAccessed")),
    )


def link_contact_row(
    data: Mapping[str, Any], stamp: Stamp, assignment_id: str, project_id: str
) -> Row | None:
    email = text(data.get("email"))
    if not email:
        return None
    return stamp.enriched(
        project_id=project_id,
        contact_email=email,
        contact_type=POLICYHOLDER,
        first_name=text(data.get("firstName")),
        last_name=text(data.get("lastName")),
        phone_number=text(data.get("phone")),
        is_primary_contact=False,
        task_assignment_id=assignment_id,
        created_date=stamp.at.date(),
    )


def video_row(item: Mapping[str, Any], stamp: Stamp, project_id: str) -> Row:
    first, last = text(item.get("claimRepFirstName")), text(item.get("claimRepLastName"))
    full = text(item.get("claimRepFullName")) or (" ".join(p for p in (first, last) if p) or None)
    return stamp.enriched(
        video_collaboration_id=ident(item.get("videoCollaborationId") or item.get("id")),
        project_id=project_id,
        claim_id=ident(item.get("claimId")),
        mfn=text(item.get("mfn")),
        claim_number=text(item.get("claimNumber")),
        policy_number=text(item.get("policyNumber")),
        email_user_name=text(item.get("emailUserName")),
        claim_rep_first_name=first,
        claim_rep_last_name=last,
        claim_rep_full_name=full,
        number_of_videos=integer(item.get("numberOfVideos")),
        number_of_photos=integer(item.get("numberOfPhotos")),
        number_of_viewers=integer(item.get("numberOfViewers")),
        session_count=integer(item.get("sessionCount")),
        total_time_seconds=text(item.get("totalTimeSeconds")),
        total_time=text(item.get("totalTime")),
        created_date=timestamp_text(item.get("createdDate")),
        live_call_first_session=timestamp_text(item.get("liveCallFirstSession")),
        live_call_last_session=timestamp_text(item.get("liveCallLastSession")),
        company_id=ident(item.get("companyId")),
        company_name=text(item.get("companyName")),
        guid=text(item.get("guid")),
    )
