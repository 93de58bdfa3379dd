"""The ClaimX Delta tables; the composition puts them in the app's table catalog beside XACT's.

Entity tables are upserts versioned by ``updated_at`` (the event's time): each column takes the
newest event's non-null value and ``created_at`` the oldest's, whatever order events are processed
in, and a task template changes only when its ``modified_date`` does. Ids are text in
every table. Timestamps that describe an event (``updated_at``, ``policyholder_invited_at``…)
are the event's ``ingestedAt``, so processing an event again writes the same values.
"""

from __future__ import annotations

import polars as pl

from shared.lake.tables import BOOLEAN, DATE, FLOAT64, INT32, INT64, STRING, UTC_TS, TableSpec, WriteMode

_ROW_TIMES: dict[str, pl.DataType] = {
    "trace_id": STRING,
    "created_at": UTC_TS,
    "updated_at": UTC_TS,
    "last_enriched_at": UTC_TS,
}


def _columns(names: str, dtype: pl.DataType) -> dict[str, pl.DataType]:
    return dict.fromkeys(names.split(), dtype)


CLAIMX_EVENTS = TableSpec(
    name="claimx_events",
    schema=pl.Schema(
        {
            **_columns(
                "trace_id event_type project_id media_id task_assignment_id video_collaboration_id "
                "master_file_name",
                STRING,
            ),
            "ingested_at": UTC_TS,
            "created_at": UTC_TS,
            "event_date": DATE,
        }
    ),
    key=("trace_id",),
    partition="event_date",
    mode=WriteMode.INSERT_ONLY,
)

CLAIMX_PROJECTS = TableSpec(
    name="claimx_projects",
    schema=pl.Schema(
        {
            **_columns(
                "project_id project_number master_file_name secondary_number created_date status "
                "date_of_loss type_of_loss cause_of_loss loss_description customer_first_name "
                "customer_last_name custom_business_name business_line_type",
                STRING,
            ),
            "year_built": INT64,
            "square_footage": FLOAT64,
            **_columns(
                "street1 street2 city state_province zip_postcode county country primary_email "
                "primary_phone primary_phone_country_code date_received date_contacted "
                "planned_inspection_date date_inspected appointment_date custom_attribute1 "
                "custom_attribute2 custom_attribute3 custom_external_unique_id company_name",
                STRING,
            ),
            "xa_autolink_fail": BOOLEAN,
            "xa_autolink_fail_at": UTC_TS,
            "policyholder_invited_at": UTC_TS,
            "policyholder_joined_at": UTC_TS,
            **_ROW_TIMES,
        }
    ),
    key=("project_id",),
    partition="project_id",
    mode=WriteMode.UPSERT,
    version="updated_at",
    large_text=frozenset({"loss_description"}),
)

CLAIMX_CONTACTS = TableSpec(
    name="claimx_contacts",
    schema=pl.Schema(
        {
            **_columns(
                "project_id contact_email contact_type first_name last_name phone_number phone_country_code",
                STRING,
            ),
            "is_primary_contact": BOOLEAN,
            **_columns("master_file_name task_assignment_id video_collaboration_id", STRING),
            "created_date": DATE,
            **_ROW_TIMES,
        }
    ),
    key=("project_id", "contact_email", "contact_type"),
    mode=WriteMode.UPSERT,
    version="updated_at",
)

CLAIMX_ATTACHMENT_METADATA = TableSpec(
    name="claimx_attachment_metadata",
    schema=pl.Schema(
        {
            **_columns(
                "media_id project_id task_assignment_id file_type file_name media_description media_comment",
                STRING,
            ),
            "latitude": FLOAT64,
            "longitude": FLOAT64,
            **_columns("gps_source taken_date full_download_link expires_at", STRING),
            **_ROW_TIMES,
        }
    ),
    key=("media_id",),
    partition="project_id",
    mode=WriteMode.UPSERT,
    version="updated_at",
    large_text=frozenset({"media_description", "media_comment", "full_download_link"}),
)

CLAIMX_TASKS = TableSpec(
    name="claimx_tasks",
    schema=pl.Schema(
        {
            **_columns(
                "assignment_id task_id task_name form_id project_id assignee_id assignor_id "
                "assignor_email date_assigned date_completed cancelled_date cancelled_by_resource_id "
                "status pdf_project_media_id date_exported form_response_id",
                STRING,
            ),
            "stp_enabled": BOOLEAN,
            **_columns("stp_started_date mfn", STRING),
            "xactimate_exportable": BOOLEAN,
            **_columns("fraud_language_accepted_date resubmit_task_assignment_id task_url", STRING),
            **_ROW_TIMES,
        }
    ),
    key=("assignment_id",),
    mode=WriteMode.UPSERT,
    version="updated_at",
    large_text=frozenset({"task_url"}),
)

CLAIMX_TASK_TEMPLATES = TableSpec(
    name="claimx_task_templates",
    schema=pl.Schema(
        {
            **_columns("task_id comp_id name description form_id form_name", STRING),
            **_columns(
                "enabled is_default is_manual_delivery is_external_link_delivery provide_portal_access "
                "notify_assigned_send_recipient notify_assigned_send_recipient_sms",
                BOOLEAN,
            ),
            "notify_assigned_subject": STRING,
            "notify_task_completed": BOOLEAN,
            "notify_completed_subject": STRING,
            **_columns("allow_resubmit auto_generate_pdf", BOOLEAN),
            **_columns("modified_by modified_by_id modified_date", STRING),
            **_ROW_TIMES,
        }
    ),
    key=("task_id",),
    mode=WriteMode.UPSERT,
    version="updated_at",
    update_only_when_changed="modified_date",
    large_text=frozenset({"description"}),
)

CLAIMX_EXTERNAL_LINKS = TableSpec(
    name="claimx_external_links",
    schema=pl.Schema(
        {
            **_columns(
                "link_id assignment_id project_id link_code url notification_access_method country_id "
                "state_id created_date",
                STRING,
            ),
            "accessed_count": INT64,
            "last_accessed": STRING,
            **_ROW_TIMES,
        }
    ),
    key=("link_id",),
    mode=WriteMode.UPSERT,
    version="updated_at",
    large_text=frozenset({"url"}),
)

CLAIMX_VIDEO_COLLAB = TableSpec(
    name="claimx_video_collab",
    schema=pl.Schema(
        {
            **_columns(
                "video_collaboration_id project_id claim_id mfn claim_number policy_number "
                "email_user_name claim_rep_first_name claim_rep_last_name claim_rep_full_name",
                STRING,
            ),
            **_columns("number_of_videos number_of_photos number_of_viewers session_count", INT64),
            **_columns(
                "total_time_seconds total_time created_date live_call_first_session "
                "live_call_last_session company_id company_name guid",
                STRING,
            ),
            **_ROW_TIMES,
        }
    ),
    key=("video_collaboration_id",),
    mode=WriteMode.UPSERT,
    version="updated_at",
)

CLAIMX_ATTACHMENTS = TableSpec(
    name="claimx_attachments",
    schema=pl.Schema(
        {
            **_columns("media_id project_id trace_id file_name file_type blob_path", STRING),
            "bytes": INT64,
            **_columns("content_type sha256", STRING),
            "downloaded_at": UTC_TS,
            "created_at": UTC_TS,
            "updated_at": UTC_TS,
        }
    ),
    key=("media_id",),
    partition="project_id",
    mode=WriteMode.UPSERT,
    preserve_on_update=("created_at", "downloaded_at"),
    large_text=frozenset({"blob_path"}),
)

CLAIMX_ATTACHMENTS_FAILED = TableSpec(
    name="claimx_attachments_failed",
    schema=pl.Schema(
        {
            **_columns("media_id trace_id attachment_url status error_category error_message", STRING),
            "http_status": INT32,
            "retry_count": INT32,
            "failed_at": UTC_TS,
            "created_at": UTC_TS,
            "project_id": STRING,
        }
    ),
    key=("media_id",),
    mode=WriteMode.UPSERT,
    preserve_on_update=("created_at", "failed_at"),
    large_text=frozenset({"attachment_url", "error_message"}),
)

ENTITY_TABLES: tuple[TableSpec, ...] = (
    CLAIMX_PROJECTS,
    CLAIMX_CONTACTS,
    CLAIMX_ATTACHMENT_METADATA,
    CLAIMX_TASKS,
    CLAIMX_TASK_TEMPLATES,
    CLAIMX_EXTERNAL_LINKS,
    CLAIMX_VIDEO_COLLAB,
)
CLAIMX_TABLES: tuple[TableSpec, ...] = (
    CLAIMX_EVENTS,
    *ENTITY_TABLES,
    CLAIMX_ATTACHMENTS,
    CLAIMX_ATTACHMENTS_FAILED,
)
CLAIMX_SPECS: dict[str, TableSpec] = {spec.name: spec for spec in CLAIMX_TABLES}
