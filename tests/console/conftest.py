"""Fixtures of the console tests: a real relay process and a logged-in client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from console.client import ConsoleClient
from tests.support.relay import RelayProcess, relay  # noqa: F401  (the fixture)


@pytest.fixture
async def client(relay: RelayProcess) -> AsyncIterator[ConsoleClient]:  # noqa: F811
    async with ConsoleClient(relay.url) as c:
        await c.login(relay.username, relay.password)
        yield c
