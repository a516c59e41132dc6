"""The scoring agent through Faust's `agent.test_context()`: routing, checkpoints, dead letters.

The model is a real ONNX model trained on a small simulated world; only Kafka is left out (the test
context feeds the agent directly, and an emitter records what it would have sent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.events import UpProfile
from core.settings import Settings
from model.registry import load_promoted
from stream.app import create_app
from tests.harness.factories import BVID, T0, hot, snap
from tests.harness.stream_harness import HOTLIST_TOPIC, SNAPSHOT_TOPIC, Harness, open_harness

pytestmark = pytest.mark.slow  # the session's trained model (conftest) costs more than all these tests


@pytest.fixture
async def harness(trained_model_dir: Path) -> AsyncIterator[Harness]:
    async with open_harness(trained_model_dir) as h:
        yield h


async def test_scores_each_horizon_once_in_event_time(harness: Harness) -> None:
    for minute in range(5, 400, 5):
        await harness.put(snap(minute, minute * 40))
    assert harness.statuses() == [(BVID, h, "scored") for h in ("1h", "3h", "6h")]
    one = harness.out.predictions[0]
    assert one.as_of == T0 + 3600
    assert one.snapshots_used == 12  # minutes 5..60: nothing after as_of
    assert one.prob is not None and 0.0 <= one.prob <= 1.0
    assert one.label in (0, 1) and one.level in ("高热", "中热", "普通")
    assert one.model_version == load_promoted(harness.model_dir).version
    assert one.early_metrics is not None and one.early_metrics.view == 60 * 40
    assert one.video is not None and one.video.tname == "游戏"


async def test_duplicates_and_out_of_order_do_not_change_the_prediction(harness: Harness) -> None:
    in_order = [snap(m, m * 40) for m in (10, 20, 30, 50, 61)]
    messy = [in_order[2], in_order[0], in_order[0], in_order[1], in_order[3], in_order[3], in_order[4]]
    for event in messy:
        await harness.put(event)
    assert harness.app.checkpointer.stats["duplicate"] == 2
    messy_pred = harness.out.predictions[0]
    other = "BV1ab4y1c7De"
    for event in in_order:
        await harness.put(event.model_copy(update={"bvid": other}))
    clean_pred = harness.out.predictions[1]
    assert clean_pred.bvid == other
    assert messy_pred.prob == clean_pred.prob
    assert messy_pred.snapshots_used == clean_pred.snapshots_used == 4


async def test_late_snapshot_is_counted_and_ignored(harness: Harness) -> None:
    await harness.put(snap(10, 400))
    await harness.put(snap(70, 2800))
    await harness.put(snap(50, 2000))  # 1h already fired
    assert harness.app.checkpointer.stats["late"] == 1
    assert harness.statuses() == [(BVID, "1h", "scored")]


async def test_hot_list_sighting_before_as_of_gives_already_hot(harness: Harness) -> None:
    await harness.put(snap(10, 400))
    await harness.put(hot(150))
    await harness.put(snap(400, 9000))
    assert harness.statuses() == [
        (BVID, "1h", "scored"),
        (BVID, "3h", "already_hot"),
        (BVID, "6h", "already_hot"),
    ]
    assert all(p.prob is None for p in harness.out.predictions[1:])


async def test_no_snapshot_before_as_of_gives_insufficient_data(harness: Harness) -> None:
    await harness.put(snap(95, 400))
    assert harness.statuses() == [(BVID, "1h", "insufficient_data")]
    assert harness.out.predictions[0].prob is None


async def test_watermark_scores_a_video_whose_snapshots_stop(harness: Harness) -> None:
    await harness.put(snap(10, 400))
    later = T0 + 3 * 3600
    await harness.put(snap(5, 100, bvid="BV1ab4y1c7De", pubdate=later))
    assert (BVID, "1h", "scored") in harness.statuses()
    assert (BVID, "3h", "scored") not in harness.statuses()  # 3h + grace not yet passed


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"{not json", BVID.encode(), "Invalid JSON"),
        (b"\xff\xfe", BVID.encode(), "Invalid JSON"),
        (b"", BVID.encode(), "empty message"),
        (b'{"bvid": "BV1xx4y1a7Aa"}', BVID.encode(), "Field required"),
        (snap(10).model_dump_json().replace('"view":100', '"view":-5').encode(), BVID.encode(), "view"),
        (snap(10).to_json(), b"BV1ab4y1c7De", "not the bvid"),
    ],
)
async def test_bad_input_goes_to_dead_letter_and_the_agent_goes_on(
    harness: Harness, value: bytes, key: bytes, reason: str
) -> None:
    await harness.put_raw(SNAPSHOT_TOPIC, value, key)
    assert len(harness.out.letters) == 1
    letter = harness.out.letters[0]
    assert reason in letter.reason
    assert letter.payload() == value
    assert letter.topic == SNAPSHOT_TOPIC
    await harness.put(snap(10, 400))
    await harness.put(snap(70, 2800))
    assert harness.statuses() == [(BVID, "1h", "scored")]


async def test_bad_hot_list_entry_goes_to_dead_letter(harness: Harness) -> None:
    await harness.put_raw(HOTLIST_TOPIC, b'{"bvid": "BV1xx4y1a7Aa", "source": "weibo"}', BVID.encode())
    assert harness.out.letters[0].topic == HOTLIST_TOPIC
    assert "source" in harness.out.letters[0].reason


async def test_uploader_profiles_feed_the_features_as_of_the_checkpoint(trained_model_dir: Path) -> None:
    settings = Settings(model_dir=trained_model_dir)
    app = create_app(settings, "localhost:1", bundle=load_promoted(trained_model_dir), with_sinks=False)
    early = UpProfile(mid=42, ts=T0 - 3600, follower=1000, archive_count=10, total_view=50_000)
    late = UpProfile(mid=42, ts=T0 + 7200, follower=9000, archive_count=11, total_view=90_000)
    app.uploaders.add(early)
    app.uploaders.add(late)
    uploaders = app.uploaders
    assert uploaders.at(42, T0 - 7200) is None  # nothing known before the first profile
    one_hour = uploaders.at(42, T0 + 3600)
    assert one_hour is not None and one_hour.follower == 1000  # the later profile would leak
    assert uploaders.at(42, T0 + 3 * 3600).follower == 9000
    assert uploaders.at(7, T0) is None
