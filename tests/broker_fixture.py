"""One embedded Tansu broker for the whole test session (it starts in well under a second).

Import `embedded_broker` into conftest.py (or a test module) to use it. Tests that share it must use
their own topic and group names: the broker's state lives as long as the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hotvideo.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A running embedded broker; `.bootstrap` is its host:port."""
    with EmbeddedBroker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker
