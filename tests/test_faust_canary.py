"""Canary: the installed faust-streaming (and aiokafka, mode) are what stream/faust_internals.py was
written against. Run it alone with `pytest -k canary` after upgrading any of them."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from faust.transport.consumer import Consumer

from stream import faust_internals
from stream.faust_internals import UPSTREAM, WRITTEN_AGAINST, Upstream, drift
from tests.harness.lane_app import lane_app

ROOT = Path(__file__).resolve().parents[1]


async def test_canary_every_overridden_or_copied_function_and_private_attribute_is_as_written() -> None:
    changed = await drift((await lane_app()).consumer)
    assert not changed, "\n".join(changed)


def test_canary_installed_faust_streaming_is_the_pinned_version() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [m.group(1) for d in dependencies if (m := re.fullmatch(r"faust-streaming==(\S+)", d))]
    assert pins == [WRITTEN_AGAINST["faust-streaming"]], "pyproject.toml pins another faust-streaming"
    assert version("faust-streaming") == WRITTEN_AGAINST["faust-streaming"]


def test_canary_names_the_changed_function_and_what_depends_on_it() -> None:
    ack = next(u for u in UPSTREAM if u.owner is Consumer and u.name == "ack")
    assert ack.drift() is None
    edited = Upstream(ack.owner, ack.name, "0" * 16, ack.ours)
    assert edited.drift() == (
        "faust-streaming changed Consumer.ack; re-check stream/faust_internals.py "
        "(FencedConsumer.ack_offsets copies its body)"
    )
    gone = Upstream(Consumer, "ack_all_at_once", ack.sha, "nothing")
    assert gone.drift() is not None and "removed Consumer.ack_all_at_once" in gone.drift()  # type: ignore[operator]


async def test_canary_names_a_private_attribute_that_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    attributes = (*faust_internals.CONSUMER_ATTRIBUTES, "_acked_offsets_v2")
    monkeypatch.setattr(faust_internals, "CONSUMER_ATTRIBUTES", attributes)
    changed = await drift((await lane_app()).consumer)
    assert changed == ["Consumer._acked_offsets_v2 is gone; re-check stream/faust_internals.py"]
