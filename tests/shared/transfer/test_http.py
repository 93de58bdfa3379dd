from __future__ import annotations

import ssl
from typing import Any

import pytest

from claimsflow.simulator import AttachmentSimulator, expected_bytes
from shared.config import DEFAULT_ALLOWED_ATTACHMENT_HOSTS, ConfigError, Settings
from shared.errors import ClassifiedError, ErrorCategory
from shared.transfer.http import SimulationRouter, create_session, get_following_redirects
from shared.transfer.urls import UrlPolicy

pytestmark = pytest.mark.unit

S3 = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
CLAIMX = "www.claimxperience.com"
STRICT = UrlPolicy.of(DEFAULT_ALLOWED_ATTACHMENT_HOSTS)


def settings(**values: Any) -> Settings:
    return Settings(**{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ENVIRONMENT": "test", **values})


def strict_session(sim: AttachmentSimulator) -> Any:
    """Production-strict policy; only the router (a test seam) points allowlisted hosts at the simulator."""
    router = SimulationRouter(sim.url, frozenset(DEFAULT_ALLOWED_ATTACHMENT_HOSTS))
    return create_session(settings(), policy=STRICT, router=router)


async def test_router_preserves_path_query_and_host() -> None:
    async with AttachmentSimulator() as sim:
        config = settings(SIMULATION_MODE="true", SIMULATOR_URL=sim.url)
        policy = UrlPolicy.from_settings(config)
        async with create_session(config, policy=policy) as session:
            url = f"https://{S3}/exports/A1/est.pdf?size=1000&X-Amz-Signature=abc"
            async with get_following_redirects(session, url, policy=policy) as fetched:
                body = await fetched.response.read()
        assert fetched.response.status == 200
        assert body == expected_bytes("/exports/A1/est.pdf", 1000)
        assert fetched.url == url
        (record,) = sim.requests
        assert record.host == S3
        assert record.path == "/exports/A1/est.pdf"
        assert record.query == "size=1000&X-Amz-Signature=abc"


async def test_relative_redirect_is_followed_and_validated() -> None:
    async with AttachmentSimulator(
        {"faults": [{"path_contains": "/start", "redirect": "/files/b.pdf?size=64"}]}
    ) as sim:
        async with strict_session(sim) as session:
            url = f"https://{CLAIMX}/start/a.pdf"
            async with get_following_redirects(session, url, policy=STRICT) as fetched:
                body = await fetched.response.read()
        assert fetched.url == f"https://{CLAIMX}/files/b.pdf?size=64"
        assert fetched.hops == 1
        assert body == expected_bytes("/files/b.pdf", 64)


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"http://{S3}/exports/A1/est.pdf",  # allowlisted host, but downgraded to http
        "https://evil.example.com/a.pdf",
        "https://10.0.0.5/a.pdf",
        "https://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_redirect_hop_rejected_before_any_request(location: str) -> None:
    async with AttachmentSimulator({"faults": [{"path_contains": "/hop", "redirect": location}]}) as sim:
        async with strict_session(sim) as session:
            with pytest.raises(ClassifiedError) as caught:
                async with get_following_redirects(session, f"https://{CLAIMX}/hop/a.pdf", policy=STRICT):
                    pytest.fail("must not get a response")
        failure = caught.value.failure
        assert failure.category is ErrorCategory.PERMANENT
        assert "redirect hop 1" in failure.message
        # Only the first request reached anything: the hop target (routed or not) was never asked.
        assert [r.path for r in sim.requests] == ["/hop/a.pdf"]


async def test_redirect_to_loopback_target_never_reaches_it() -> None:
    async with AttachmentSimulator() as target:
        location = f"http://127.0.0.1:{target.port}/steal.pdf"
        world = {"faults": [{"path_contains": "/hop", "redirect": location}]}
        async with AttachmentSimulator(world) as sim, strict_session(sim) as session:
            with pytest.raises(ClassifiedError):
                async with get_following_redirects(session, f"https://{CLAIMX}/hop/a.pdf", policy=STRICT):
                    pass
        assert target.requests == []


async def test_too_many_redirects_is_permanent() -> None:
    async with AttachmentSimulator(
        {"faults": [{"path_contains": "/loop", "redirect": "/loop/a.pdf"}]}
    ) as sim:
        async with strict_session(sim) as session:
            with pytest.raises(ClassifiedError, match="more than 2 redirects") as caught:
                async with get_following_redirects(
                    session, f"https://{CLAIMX}/loop/a.pdf", policy=STRICT, max_hops=2
                ):
                    pass
        assert caught.value.failure.category is ErrorCategory.PERMANENT
        assert len(sim.requests) == 3


async def test_session_middleware_checks_every_request() -> None:
    async with AttachmentSimulator() as sim:
        async with strict_session(sim) as session:
            with pytest.raises(ClassifiedError, match="allowlist"):
                await session.get("https://evil.example.com/a.pdf")
            # Even aiohttp's own redirect following passes the policy on each hop.
            sim.add_fault({"path_contains": "/auto", "redirect": "http://169.254.169.254/x"})
            with pytest.raises(ClassifiedError, match="blocked"):
                await session.get(f"https://{CLAIMX}/auto/a.pdf", allow_redirects=True)
        assert [r.path for r in sim.requests] == ["/auto/a.pdf"]


async def test_tls_verification_cannot_be_disabled() -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    async with create_session(settings()) as session:
        for value in (False, unverified):
            with pytest.raises(ClassifiedError, match="TLS verification cannot be disabled"):
                await session.get("https://127.0.0.1:9/a.pdf", ssl=value)


def test_router_only_in_simulation_and_never_in_production() -> None:
    assert SimulationRouter.from_settings(settings()) is None
    production = Settings.model_construct(
        simulation_mode=True,
        simulator_url="http://127.0.0.1:1",
        environment="production",
        allowed_attachment_hosts=DEFAULT_ALLOWED_ATTACHMENT_HOSTS,
    )
    with pytest.raises(ConfigError, match="refused"):
        SimulationRouter.from_settings(production)
    with pytest.raises(ConfigError, match="SIMULATOR_URL"):
        SimulationRouter.from_settings(settings(SIMULATION_MODE="true"))
    with pytest.raises(ConfigError, match="loopback"):
        SimulationRouter("https://attacker.example.com", frozenset({S3}))


def test_router_routes_only_allowlisted_hosts() -> None:
    from yarl import URL

    router = SimulationRouter("http://127.0.0.1:8123", frozenset({S3}))
    routed = router.route(URL(f"https://{S3}/a/b.pdf?x=1"))
    assert str(routed) == "http://127.0.0.1:8123/a/b.pdf?x=1"
    assert router.route(URL("https://other.example.com/a.pdf")) is None
