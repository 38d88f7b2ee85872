"""AWS on loopback: moto's server mode, which speaks the real AWS wire protocols. The tables are
template.yaml's own, made as `make run-lambda` makes them (local/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from local.moto_server import MotoServer
from local.stack import create_table

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

REGION = "us-east-1"


@dataclass(frozen=True)
class Moto:
    url: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to talk to this server, with made-up credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def client(self, service: str) -> Any:
        """A boto3 client for `service` on this server."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.client("dynamodb")
        return client


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    server = MotoServer()
    server.start()
    yield Moto(server.url)
    server.stop()


def create_streams_table(client: DynamoDBClient, name: str) -> None:
    """The stream log as template.yaml declares it: keyed by stream and seq, TTL on ttl."""
    create_table(client, "StreamsTable", name)


def create_usage_table(client: DynamoDBClient, name: str) -> None:
    """The usage table as template.yaml declares it: keyed by request_id, the day index, TTL on
    expires_at."""
    create_table(client, "UsageTable", name)


def create_keys_table(client: DynamoDBClient, name: str) -> None:
    """The API keys table as template.yaml declares it: keyed by key_id, TTL on ttl."""
    create_table(client, "KeysTable", name)


def create_limits_table(client: DynamoDBClient, name: str) -> None:
    """The limits table as template.yaml declares it: keyed by pk, TTL on ttl."""
    create_table(client, "LimitsTable", name)
