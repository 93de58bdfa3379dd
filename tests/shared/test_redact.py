from __future__ import annotations

import json

import pytest

from shared.redact import public_url, redact_json_text, redact_text, redact_url, redact_value, strip_query

pytestmark = pytest.mark.unit

S3 = (
    "https://bucket.s3.us-west-2.amazonaws.com/exports/A1/estimate.pdf"
    "?X-Amz-Date=20260214T150405Z&X-Amz-Expires=604800&X-Amz-Credential=AKIA123&X-Amz-Signature=abcdef"
)


def test_presigned_signature_and_credential_are_masked() -> None:
    redacted = redact_url(S3)
    assert "abcdef" not in redacted
    assert "AKIA123" not in redacted
    assert "X-Amz-Date=20260214T150405Z" in redacted


def test_sas_token_masked_and_userinfo_removed() -> None:
    redacted = redact_url("https://user:pw@acct.blob.core.windows.net/c/b?sv=2024&sig=SECRET&sp=r")
    assert "SECRET" not in redacted
    assert "pw" not in redacted
    assert redacted.startswith("https://REDACTED@acct.blob.core.windows.net/c/b?")


def test_storage_uri_keeps_its_container_and_masks_a_password() -> None:
    """In abfss and wasbs the part before ``@`` names the container: a reader needs it."""
    lake = "abfss://lake@devstoreaccount1.dfs.core.windows.net/Files/xact"
    onelake = (
        "abfss://0f1e2d3c-aaaa-bbbb-cccc-123456789abc@onelake.dfs.fabric.microsoft.com/lh.Lakehouse/Tables"
    )
    assert redact_url(lake) == lake
    assert redact_text(f"LAKE_TABLES_URI={onelake}") == f"LAKE_TABLES_URI={onelake}"
    assert redact_url("wasbs://c:hunter2@acct.blob.core.windows.net/x") == (
        "wasbs://REDACTED@acct.blob.core.windows.net/x"
    )
    assert redact_url("https://lake@acct.blob.core.windows.net/x").startswith("https://REDACTED@")


def test_free_text_urls_and_keys_masked() -> None:
    text = f"GET {S3} failed; AccountKey=abc123== ; Authorization: Bearer eyJtoken"
    redacted = redact_text(text)
    assert "abcdef" not in redacted
    assert "abc123" not in redacted
    assert "eyJtoken" not in redacted


def test_strip_query_keeps_the_stable_identity() -> None:
    assert strip_query(S3) == "https://bucket.s3.us-west-2.amazonaws.com/exports/A1/estimate.pdf"


GCS = (
    "https://storage.googleapis.com/b/o.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=svc%40proj.iam.gserviceaccount.com%2F20260214&X-Goog-Signature=0a1b2c3d"
)
CLOUDFRONT = "https://d111.cloudfront.net/f.jpg?Expires=1700000000&Policy=eyJQb2xpY3kiOl0&Signature=c2ln~&Key-Pair-Id=K2JCJMDEHXQW5F"


@pytest.mark.parametrize(
    ("url", "secrets", "kept"),
    [
        (S3.replace("&", "&amp;"), ["abcdef", "AKIA123"], ["X-Amz-Date=20260214T150405Z", "&amp;"]),
        (S3.replace("&", ";"), ["abcdef", "AKIA123"], ["X-Amz-Expires=604800;"]),
        (GCS, ["0a1b2c3d", "svc%40proj"], ["X-Goog-Algorithm=GOOG4-RSA-SHA256"]),
        (CLOUDFRONT, ["eyJQb2xpY3kiOl0", "c2ln~", "K2JCJMDEHXQW5F"], ["Expires=1700000000"]),
        ("https://h.example.com/cb#access_token=AT1&id_token=IT1&state=s", ["AT1", "IT1"], ["state=s"]),
        ("https://h.example.com/t?client_secret=C1&refresh_token=R1&access_key=K1", ["C1", "R1", "K1"], []),
        ("https://h.example.com/go?next=https%3A%2F%2Fx.example.com%3Fsig%3DNESTED", ["NESTED"], ["next="]),
        ("https://alice:s3cret@h.example.com/f.pdf", ["alice", "s3cret"], ["@h.example.com/f.pdf"]),
        ("http://[::1/f.pdf?sig=MALFORMED", ["MALFORMED"], ["http://[::1/f.pdf?sig="]),
    ],
)
def test_every_signature_form_is_masked_and_the_rest_kept_verbatim(
    url: str, secrets: list[str], kept: list[str]
) -> None:
    redacted = redact_url(url)
    for secret in secrets:
        assert secret not in redacted
        assert secret not in redact_text(f"fetching <{url}> failed")
    for part in kept:
        assert part in redacted


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIA/20260214/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027",
            "fe5f80f77d5fa3beca038a248ff027",
        ),
        ("Authorization: SharedKey myaccount:ctzMq410TV3wS7upTBcunJTDLEJwMAZuFPfr0mrrA08=", "ctzMq410"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("headers={'Authorization': 'Bearer eyJhbGciOi.payload.sig', 'x-ms-version': '2024'}", "eyJhbGciOi"),
        ("{'password': 'hunter2', 'user': 'bob'}", "hunter2"),
        ('{"client_secret": "cs-123", "grant_type": "client_credentials"}', "cs-123"),
        ("refresh_token=rt-999&scope=x", "rt-999"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;EndpointSuffix=x", "abc123=="),
        ("x-goog-credential: svc@proj/20260214", "svc@proj"),
    ],
)
def test_free_text_secrets_are_masked(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert "REDACTED" in redacted


def test_plain_words_are_not_taken_for_secrets() -> None:
    text = "retry policy: exponential; token expired after 5 s; Basic information; key rotation due"
    assert redact_text(text) == text


def test_public_url_drops_query_fragment_and_user_info() -> None:
    assert public_url("https://u:p@h.example.com/a/b.pdf?sig=x#frag") == "https://h.example.com/a/b.pdf"
    assert public_url("not a url?x=1") == "not a url"


def test_redact_value_walks_structures() -> None:
    value = {"url": S3, "password": "pw", "nested": [{"token": "tk"}, "Bearer abc"], "n": 3}
    redacted = redact_value(value)
    assert "abcdef" not in str(redacted) and "pw'" not in str(redacted) and "tk" not in str(redacted)
    assert redacted["n"] == 3
    assert "abc" not in str(redacted["nested"][1])


def test_json_document_keeps_its_values_and_loses_its_secrets() -> None:
    data = {"attachments": [S3, CLOUDFRONT], "password": "pw1", "note": "see https://h.example.com/x"}
    body = json.dumps({"traceId": "t", "n": 1, "data": json.dumps(data)})
    redacted = redact_json_text(body)
    for secret in ("abcdef", "AKIA123", "eyJQb2xpY3kiOl0", "K2JCJMDEHXQW5F", "pw1"):
        assert secret not in redacted
    document = json.loads(redacted)
    inner = json.loads(document["data"])
    assert document["n"] == 1 and inner["note"] == data["note"]
    assert inner["attachments"][0] == redact_url(S3)


def test_json_without_secrets_is_returned_unchanged() -> None:
    body = (
        '{"traceId": "t-1",  "data": {"assignmentId": "A1", "attachments": ["https://h.example.com/a.pdf"]}}'
    )
    assert redact_json_text(body) is body


def test_escaped_secret_names_are_still_found() -> None:
    """JSON may spell any character as an escape (.NET writes & as \\u0026)."""
    body = '{"u": "https://h.example.com/a.pdf?X-Amz-\\u0053ignature\\u003dESCAPED\\u0026x=1"}'
    assert "ESCAPED" not in json.loads(redact_json_text(body))["u"]


def test_fuzz_findings_stay_fixed() -> None:
    """Inputs the fuzz harness found: a URL broken by control characters before its query, and a
    second # inside a fragment, each hid a signature."""
    broken = 'https://h.example.com/a\x1c\x1d"b?X-Amz-Date=1&amp;Policy=HIDDEN1'
    assert "HIDDEN1" not in redact_json_text(json.dumps({"attachments": [broken]}))
    assert "HIDDEN1" not in redact_text(f"see {broken}")
    twice = "https://h.example.com/x#N$%&'()-G#X-Goog-Signature=HIDDEN2"
    assert "HIDDEN2" not in redact_url(twice)
    assert "HIDDEN3" not in redact_url("https://h.example.com/app#/cb?access_token=HIDDEN3")
