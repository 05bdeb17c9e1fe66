from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake import FakeServer


@pytest.fixture
def fake_cri() -> Iterator[FakeServer]:
    srv = FakeServer()
    try:
        yield srv
    finally:
        srv.close()
