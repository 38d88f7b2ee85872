"""Bedrock's authorisation: SigV4 by botocore's signer, checked by the fake's own verifier
(written from AWS's specification); the Bearer key; botocore's credential chain, resolved and
refreshed in worker threads only, one refresh for many waiting streams."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from streamfn.providers.bedrock import aws
from streamfn.providers.bedrock.aws import AwsAccess, NotConfigured, endpoint_url
from tests.fakes import bedrock as fake
from tests.fakes.upstream import Recorded

ENDPOINT = "http://127.0.0.1:9"
URL = f"{ENDPOINT}/model/{quote(fake.MODEL, safe='')}/converse-stream"
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake.environment(monkeypatch, tmp_path)


def as_received(headers: dict[str, str], body: bytes = BODY, url: str = URL) -> Recorded:
    """The request as the fake server records it (httpx adds the Host header)."""
    parts = urlsplit(url)
    received = {k.lower(): v for k, v in headers.items()} | {"host": parts.netloc}
    return Recorded("POST", parts.path, received, body)


async def signed(access: AwsAccess, body: bytes = BODY) -> dict[str, str]:
    await access.target()
    return access.sign(URL, body, {"content-type": "application/json"})


async def test_a_sigv4_signature_the_fake_accepts_and_its_scope() -> None:
    access = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=None)
    headers = await signed(access)
    assert fake.sigv4_problem(as_received(headers)) is None
    authorization = headers["Authorization"]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    assert (
        f"Credential={fake.ACCESS_KEY}/{date}/{fake.REGION}/bedrock/aws4_request" in authorization
    )
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in authorization
    # The model id's ':' encoded once in the path, twice in the canonical request: the fake's
    # verifier did the second itself, so botocore's signer did too.
    assert "%3A0/converse-stream" in URL


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("body", "InvalidSignatureException"),
        ("path", "InvalidSignatureException"),
        ("token", "UnrecognizedClientException"),
    ],
)
async def test_a_tampered_request_is_refused(change: str, problem: str) -> None:
    access = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=None)
    headers = await signed(access)
    received = as_received(headers)
    if change == "body":
        received.body = BODY.replace(b"hi", b"ho")
    elif change == "path":
        received.path = received.path.replace("sonnet", "opus")
    else:
        received.headers["x-amz-security-token"] = "another"
    refused = fake.sigv4_problem(received)
    assert refused is not None
    assert refused[0] == problem


@pytest.mark.parametrize(
    ("service", "region", "words"),
    [
        ("bedrock-runtime", fake.REGION, "correct service: 'bedrock'"),  # the endpoint's prefix
        ("bedrock", "eu-west-1", "valid region"),
    ],
)
def test_the_credential_scope_must_be_bedrocks_in_its_region(
    service: str, region: str, words: str
) -> None:
    request = AWSRequest(method="POST", url=URL, data=BODY, headers={"content-type": "x"})
    credentials = Credentials(fake.ACCESS_KEY, fake.SECRET_KEY, fake.SESSION_TOKEN)
    SigV4Auth(credentials, service, region).add_auth(request)
    refused = fake.sigv4_problem(as_received(dict(request.headers.items())))
    assert refused is not None
    assert words in refused[1]


async def test_a_bedrock_api_key_is_a_bearer_token() -> None:
    access = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=fake.API_KEY)
    headers = await signed(access)
    assert headers["authorization"] == f"Bearer {fake.API_KEY}"
    assert fake.bearer_problem(as_received(headers)) is None
    wrong = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token="ABSK-other")
    refused = fake.bearer_problem(as_received(await signed(wrong)))
    assert refused is not None
    assert refused[0] == "AccessDeniedException"


async def test_a_bearer_key_never_crosses_the_network_in_the_clear() -> None:
    access = AwsAccess(region=fake.REGION, endpoint="http://bedrock.internal", bearer_token="k")
    with pytest.raises(NotConfigured, match="only over https"):
        await access.target()


def test_endpoints() -> None:
    assert endpoint_url("eu-west-3", None) == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert endpoint_url("cn-north-1", None) == "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"
    assert endpoint_url(None, "http://127.0.0.1:9/") == "http://127.0.0.1:9"
    with pytest.raises(NotConfigured, match="AWS_REGION"):
        endpoint_url(None, None)


async def test_no_credentials_is_a_clear_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    access = AwsAccess(region=fake.REGION, endpoint=None, bearer_token=None)
    with pytest.raises(NotConfigured, match="no AWS credentials found"):
        await access.target()
    # Credentials that appear later (an `aws sso login`) are looked for again, not at once.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", fake.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fake.SECRET_KEY)
    with pytest.raises(NotConfigured, match="no AWS credentials found"):
        await access.target()
    monkeypatch.setattr(aws, "_RETRY_MISSING_S", 0.0)
    assert (await access.target()).region == fake.REGION
    monkeypatch.delenv("AWS_REGION")
    access = AwsAccess(region=None, endpoint=None, bearer_token=None)
    with pytest.raises(NotConfigured, match="no AWS region"):
        await access.target()


# --- refreshable credentials: botocore's credential_process provider ---------------------------

PROCESS = """
import datetime, json, sys, time
from pathlib import Path
calls = Path(sys.argv[1])
n = int(calls.read_text()) + 1 if calls.exists() else 1
calls.write_text(str(n))
time.sleep(0.4)  # a slow endpoint (IMDS, SSO): the event loop must not wait on it
lifetime = {lifetime}
seconds = lifetime[min(n, len(lifetime)) - 1]
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
print(json.dumps({{"Version": 1, "AccessKeyId": "AKIAPROCESS%d" % n,
    "SecretAccessKey": "secret-%d" % n, "SessionToken": "token-%d" % n,
    "Expiration": expires.isoformat()}}))
"""


def credential_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lifetimes: list[int]
) -> Path:
    """A profile whose credentials come from a process (botocore makes them refreshable), which
    counts its runs in the file returned."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    script, calls = tmp_path / "process.py", tmp_path / "calls"
    script.write_text(PROCESS.format(lifetime=json.dumps(lifetimes)))
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {script} {calls}\n")
    return calls


async def targets(access: AwsAccess, streams: int) -> None:
    await asyncio.gather(*(access.target() for _ in range(streams)))


async def loop_lag_during(work: asyncio.Task[None]) -> float:
    """The longest the loop was kept from a 10 ms timer while `work` ran."""
    worst = 0.0
    while not work.done():
        started = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - started - 0.01)
    await work
    return worst


async def test_credentials_are_resolved_and_refreshed_off_the_loop_once_for_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # First credentials expire in 5 minutes (inside botocore's mandatory window: they must be
    # replaced before use), the next ones in an hour.
    calls = credential_process(monkeypatch, tmp_path, [300, 300, 3600])
    access = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=None)
    loop_thread = threading.get_ident()
    threads: list[int] = []
    original = access._refresh

    def refresh() -> None:
        threads.append(threading.get_ident())
        original()

    monkeypatch.setattr(access, "_refresh", refresh)
    # Twenty streams start at once: one resolution, in a worker thread, none on the loop.
    work = asyncio.create_task(targets(access, 20))
    assert await loop_lag_during(work) < 0.2
    assert loop_thread not in threads
    assert len(threads) == 1, "one worker thread resolved for the twenty"
    # Resolving ran the process (botocore, then its mandatory refresh on first use).
    resolved = int(calls.read_text())
    assert resolved >= 1
    headers = access.sign(URL, BODY, {"content-type": "application/json"})
    key = headers["Authorization"].split("Credential=")[1].split("/")[0]
    # Whatever it holds now is past the mandatory window, or the next call refreshes once.
    work = asyncio.create_task(targets(access, 20))
    assert await loop_lag_during(work) < 0.2
    final = int(calls.read_text())
    assert final == resolved + 1
    assert len(threads) == 2, "one refresh, in one thread, for all the streams waiting"
    headers = access.sign(URL, BODY, {"content-type": "application/json"})
    now = headers["Authorization"].split("Credential=")[1].split("/")[0]
    assert now == f"AKIAPROCESS{final}"
    assert key.startswith("AKIAPROCESS")
    # Fresh for an hour: no more refreshes.
    await asyncio.gather(*(access.target() for _ in range(5)))
    assert int(calls.read_text()) == final
    assert loop_thread not in threads


async def test_due_credentials_are_refreshed_in_the_background(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Credentials that enter botocore's advisory window (15 minutes left) 2 s after they are
    # fetched, far from its mandatory one (10 minutes).
    calls = credential_process(monkeypatch, tmp_path, [902, 3600])
    access = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=None)
    await access.target()
    assert calls.read_text() == "1"
    await asyncio.sleep(2.5)
    started = time.monotonic()
    await access.target()  # goes on with the current ones, refresh started
    assert time.monotonic() - started < 0.1
    assert "AKIAPROCESS1" in access.sign(URL, BODY, {})["Authorization"]
    deadline = time.monotonic() + 5
    while (
        calls.read_text() != "2"
        or "AKIAPROCESS2" not in access.sign(URL, BODY, {})["Authorization"]
    ):
        assert time.monotonic() < deadline, "the background refresh did not happen"
        await asyncio.sleep(0.05)
    await access.target()
    assert calls.read_text() == "2"


def test_secrets_are_known_for_redaction() -> None:
    access = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=None)
    access.resolve()
    assert set(access.secrets()) >= {fake.SECRET_KEY, fake.SESSION_TOKEN}
    bearer = AwsAccess(region=fake.REGION, endpoint=ENDPOINT, bearer_token=fake.API_KEY)
    assert fake.API_KEY in bearer.secrets()
