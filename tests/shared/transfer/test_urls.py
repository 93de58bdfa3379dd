from __future__ import annotations

from typing import Any

import pytest

from shared.config import DEFAULT_ALLOWED_ATTACHMENT_HOSTS, ConfigError, Settings
from shared.errors import ClassifiedError, ErrorCategory
from shared.transfer.urls import UrlPolicy

pytestmark = pytest.mark.unit

S3 = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"


def settings(**values: Any) -> Settings:
    return Settings(**{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ENVIRONMENT": "test", **values})


POLICY = UrlPolicy.of(DEFAULT_ALLOWED_ATTACHMENT_HOSTS)
SIM_POLICY = UrlPolicy.of(DEFAULT_ALLOWED_ATTACHMENT_HOSTS, simulation=True)


@pytest.mark.parametrize(
    "url",
    [
        f"https://{S3}/exports/A1/estimate.pdf",
        f"https://{S3.upper()}/exports/A1/estimate.pdf",
        f"https://{S3}./exports/A1/estimate.pdf",
        f"https://{S3}:443/exports/A1/estimate.pdf",
        f"https://{S3}/a/b.pdf?X-Amz-Signature=abc&X-Amz-Date=20260101T000000Z",
        "https://www.claimxperience.com/service/media/1?systemDate=1&expires=2",
        "https://claimxperience.com/x/report..pdf",
    ],
)
def test_allowed(url: str) -> None:
    POLICY.check(url)
    assert POLICY.is_allowed(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        (f"http://{S3}/a.pdf", "HTTPS"),
        (f"ftp://{S3}/a.pdf", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://evil.example.com/a.pdf", "allowlist"),
        (f"https://evil.{S3}/a.pdf", "allowlist"),  # no sub-domains
        (f"https://{S3}.evil.com/a.pdf", "allowlist"),  # no suffix tricks
        ("https://s3.us-west-2.amazonaws.com/a.pdf", "allowlist"),  # parent domain is not the host
        (f"https://user:pw@{S3}/a.pdf", "credentials"),
        (f"https://{S3}@evil.com/a.pdf", "credentials"),
        ("https://169.254.169.254/latest/meta-data/", "blocked"),
        ("http://169.254.169.254/latest/meta-data/", "blocked"),
        ("https://metadata.google.internal/computeMetadata/v1/", "blocked"),
        ("https://metadata.aws.internal/a.pdf", "blocked"),
        ("https://localhost/a.pdf", "blocked"),
        ("https://127.0.0.1/a.pdf", "blocked"),
        ("https://0.0.0.0/a.pdf", "blocked"),
        ("https://10.1.2.3/a.pdf", "private"),
        ("https://172.16.0.1/a.pdf", "private"),
        ("https://172.31.255.255/a.pdf", "private"),
        ("https://192.168.1.1/a.pdf", "private"),
        ("https://169.254.10.10/a.pdf", "private"),
        ("https://127.8.8.8/a.pdf", "private"),
        ("https://[::1]/a.pdf", "blocked"),
        ("https://[fe80::1]/a.pdf", "private"),
        ("https://[fc00::1]/a.pdf", "private"),
        ("https://[fd12:3456::1]/a.pdf", "private"),
        ("https://[::ffff:169.254.169.254]/a.pdf", "private"),
        ("https://8.8.8.8/a.pdf", "IP literal"),
        ("https://2130706433/a.pdf", "IP literal"),  # decimal 127.0.0.1
        ("https://0x7f.0.0.1/a.pdf", "IP literal"),
        (f"https://{S3}/a/../../etc/passwd.pdf", "'..'"),
        (f"https://{S3}/a/%2e%2e/b.pdf", "'..'"),
        (f"https://{S3}/a.pdf?next=file:///etc/passwd", "nested"),
        (f"https://{S3}:8443/a.pdf", "port"),
        (f"https://{S3}/a b.pdf", "whitespace"),
        (f"https://{S3}\\@evil.com/a.pdf", "backslash"),
        ("not-a-url", "scheme"),
        ("not a url", "whitespace"),
        ("https:///a.pdf", "no host"),
    ],
)
def test_rejected_permanent_with_reason(url: str, reason: str) -> None:
    with pytest.raises(ClassifiedError) as caught:
        POLICY.check(url)
    assert caught.value.failure.category is ErrorCategory.PERMANENT
    assert reason in caught.value.failure.message
    assert not POLICY.is_allowed(url)


def test_message_is_redacted() -> None:
    url = "https://evil.example.com/a.pdf?X-Amz-Signature=SECRETSIG&sig=OTHERSECRET"
    with pytest.raises(ClassifiedError) as caught:
        POLICY.check(url)
    message = caught.value.failure.message
    assert "SECRETSIG" not in message and "OTHERSECRET" not in message
    assert "evil.example.com" in message


def test_allowlist_setting_replaces_defaults() -> None:
    policy = UrlPolicy.from_settings(
        settings(ALLOWED_ATTACHMENT_HOSTS="Files.Example.org, other.example.org")
    )
    policy.check("https://files.example.org/a.pdf")
    policy.check("https://OTHER.example.org/a.pdf")
    with pytest.raises(ClassifiedError):
        policy.check(f"https://{S3}/a.pdf")


def test_simulation_mode_allows_loopback_but_never_metadata() -> None:
    SIM_POLICY.check("http://127.0.0.1:8080/a.pdf")
    SIM_POLICY.check("http://localhost/a.pdf")
    SIM_POLICY.check("http://attachments-simulation/a.pdf")
    SIM_POLICY.check("http://pcesdopodappv1_files/a.pdf")
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.pdf",
        f"http://{S3}/a.pdf",  # allowlisted hosts stay https-only
        "http://user:pw@127.0.0.1/a.pdf",
        "http://127.0.0.1/../a.pdf",
        "http://127.0.0.1/a.pdf?u=gopher://x",
        "http://evil.example.com/a.pdf",
    ):
        with pytest.raises(ClassifiedError):
            SIM_POLICY.check(url)


def test_simulation_refused_in_production() -> None:
    with pytest.raises(ValueError, match="SIMULATION_MODE is refused"):
        settings(SIMULATION_MODE="true", ENVIRONMENT="production")
    assert UrlPolicy.from_settings(settings(SIMULATION_MODE="true")).simulation_allowed
    production = UrlPolicy.of(DEFAULT_ALLOWED_ATTACHMENT_HOSTS, simulation=True, production=True)
    assert not production.simulation_allowed
    with pytest.raises(ClassifiedError):
        production.check("http://127.0.0.1:8080/a.pdf")
    assert isinstance(ConfigError("x"), ValueError)


@pytest.mark.parametrize(
    ("address", "allowed", "in_simulation"),
    [
        ("8.8.8.8", True, True),
        ("2606:4700:4700::1111", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("10.1.2.3", False, False),
        ("172.20.0.5", False, False),
        ("192.168.1.1", False, False),
        ("169.254.169.254", False, False),
        ("100.64.0.1", False, False),
        ("192.0.2.10", False, False),
        ("0.0.0.0", False, False),
        ("224.0.0.1", False, False),
        ("fe80::1%eth0", False, False),
        ("fd00:ec2::254", False, False),
        ("::ffff:10.0.0.1", False, False),
        ("2002:a00:1::", False, False),  # 6to4 carrying 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False, False),  # NAT64 of 169.254.169.254
        ("not-an-address", False, False),
    ],
)
def test_resolved_addresses_must_be_public(address: str, allowed: bool, in_simulation: bool) -> None:
    assert UrlPolicy.of(("h.example.com",)).address_allowed(address) is allowed
    assert UrlPolicy.of(("h.example.com",), simulation=True).address_allowed(address) is in_simulation
    production = UrlPolicy.of(("h.example.com",), simulation=True, production=True)
    assert production.address_allowed(address) is allowed
