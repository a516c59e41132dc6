"""Hostile input, thousands of times: every bad message is dead-lettered with a reason, every valid
one is processed, and the scoring agent never stops (issue: nothing lost, nothing twice)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events import EARLIEST_TS, LATEST_TS, MAX_COUNT, Snapshot
from core.reference import COUNT_FIELDS
from tests.harness.factories import T0
from tests.harness.stream_harness import SNAPSHOT_TOPIC, open_harness

pytestmark = pytest.mark.slow  # thousands of messages through the agent, with a trained model

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

bvids = st.text(ALPHABET, min_size=10, max_size=10).map(lambda s: "BV" + s)
counts = st.integers(min_value=0, max_value=10**9)


@st.composite
def valid_snapshots(draw: st.DrawFn) -> Snapshot:
    pubdate = draw(st.integers(min_value=T0, max_value=T0 + 86400))
    return Snapshot(
        bvid=draw(bvids),
        pubdate=pubdate,
        ts=pubdate + draw(st.integers(min_value=0, max_value=8 * 3600)),
        **{f: draw(counts) for f in COUNT_FIELDS},
        tid=draw(st.none() | st.integers(min_value=0, max_value=300)),
        title=draw(st.none() | st.text(max_size=40)),
        follower=draw(st.none() | counts),
    )


def mutate(snap: Snapshot, field: str, value: Any) -> bytes:
    body = json.loads(snap.to_json())
    body[field] = value
    return json.dumps(body, ensure_ascii=False).encode()


@st.composite
def bad_messages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(value, key) pairs that no valid snapshot can be: each kind the issue names."""
    snap = draw(valid_snapshots())
    key = snap.key()
    kind = draw(st.sampled_from(range(12)))
    raw = snap.to_json()
    if kind == 0:  # truncated
        return raw[: draw(st.integers(min_value=0, max_value=len(raw) - 1))], key
    if kind == 1:  # random bytes, often not UTF-8
        return draw(st.binary(min_size=0, max_size=200)), key
    if kind == 2:  # not UTF-8 inside a JSON string
        return raw.replace(b'"bvid"', b'"bvid\xff\xfe"', 1), key
    if kind == 3:  # a bvid that is not BV + 10 base58 characters
        bad = draw(st.text(max_size=20).filter(lambda s: not (len(s) == 12 and s.startswith("BV"))))
        return mutate(snap, "bvid", bad), key
    if kind == 4:  # negative count
        return mutate(snap, draw(st.sampled_from(COUNT_FIELDS)), draw(st.integers(max_value=-1))), key
    if kind == 5:  # huge count
        return mutate(
            snap, draw(st.sampled_from(COUNT_FIELDS)), draw(st.integers(min_value=MAX_COUNT + 1))
        ), key
    if kind == 6:  # wrong type
        wrong = draw(st.sampled_from(["12", 1.5, None, [], {}, True]))
        return mutate(snap, draw(st.sampled_from((*COUNT_FIELDS, "ts", "pubdate"))), wrong), key
    if kind == 7:  # timestamps far in the past or the future
        ts = draw(st.integers(max_value=EARLIEST_TS - 1) | st.integers(min_value=LATEST_TS + 1))
        return mutate(snap, draw(st.sampled_from(("ts", "pubdate"))), ts), key
    if kind == 8:  # observed before publication
        return mutate(snap, "ts", snap.pubdate - draw(st.integers(min_value=1, max_value=10**6))), key
    if kind == 9:  # oversized
        return mutate(snap, "title", "长" * draw(st.integers(min_value=513, max_value=20_000))), key
    if kind == 10:  # a required field missing
        body = json.loads(raw)
        del body[draw(st.sampled_from(("bvid", "ts", "pubdate", *COUNT_FIELDS)))]
        return json.dumps(body).encode(), key
    return raw, b"BV1" + b"1" * 9  # a valid body under another video's key


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    st.lists(
        st.one_of(
            valid_snapshots().map(lambda s: ("valid", s.to_json(), s.key())),
            bad_messages().map(lambda m: ("bad", *m)),
        ),
        min_size=450,
        max_size=450,
    )
)
def test_fuzzed_input_is_dead_lettered_or_processed_and_never_stops_the_agent(
    trained_model_dir: Path, messages: list[tuple[str, bytes, bytes]]
) -> None:
    asyncio.run(run_messages(trained_model_dir, messages))


TOTALS: dict[str, int] = {"sent": 0, "rejected": 0, "processed": 0}


async def run_messages(model_dir: Path, messages: list[tuple[str, bytes, bytes]]) -> None:
    async with open_harness(model_dir) as h:
        for _, value, key in messages:
            await h.send(SNAPSHOT_TOPIC, value, key)
        await h.settle(timeout_s=60)
        stats = h.app.checkpointer.stats
        bad = [m for m in messages if m[0] == "bad"]
        processed = sum(stats[k] for k in ("added", "duplicate", "beyond", "untracked_old", "after_done"))
        assert stats["messages"] == len(messages), "the agent stopped before the end"
        assert len(h.out.letters) == len(bad), "every bad message, and only those, is dead-lettered"
        assert [letter.payload() for letter in h.out.letters] == [value for _, value, _ in bad]
        assert all(letter.reason and letter.topic == SNAPSHOT_TOPIC for letter in h.out.letters)
        assert processed == len(messages) - len(bad), "every valid snapshot reached the state"
    TOTALS["sent"] += len(messages)
    TOTALS["rejected"] += len(bad)
    TOTALS["processed"] += processed


def test_fuzz_report() -> None:
    """Runs after the fuzz test (file order): at least 5,000 events, and the counts for the record."""
    print(f"\nfuzz: sent {TOTALS['sent']}, rejected {TOTALS['rejected']}, processed {TOTALS['processed']}")
    assert TOTALS["sent"] >= 5000
    assert TOTALS["sent"] == TOTALS["rejected"] + TOTALS["processed"]
