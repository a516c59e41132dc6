"""JSONL event logs: the replayable, diffable form of a stream of events.

One line per message: `{"topic": "<Topics field>", "key": "<key>" | null, "value": {...}}`. The topic
is the `Topics` field name (`snapshot`, `profile`, `hotlist`, …), not the Kafka topic, so one log
replays onto any topic naming. An empty key (dead letters) is written as null. A value may also be a
JSON string: its UTF-8 bytes are the message as is, so a log can carry malformed payloads on purpose.
Paths ending in `.gz` are gzip-compressed, with no name and a zero mtime so equal logs are equal bytes.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from hotvideo.events import EVENT_TYPES, BadEvent, Event, parse_event
from hotvideo.logs import get_logger

log = get_logger(__name__)

MODELS: dict[str, type[Event]] = {model.topic_field: model for model in EVENT_TYPES}
"""Topics field name -> event model."""

_LINE = re.compile(rb'^\{"topic":"(\w+)","key":(null|"[^"\\]*"),"value":(\{.*\})\}$')
"""The exact shape `write_log` writes: read without a JSON parse, value bytes untouched."""


class EventLogError(ValueError):
    """A line of an event log is malformed; the message names the file and line number."""


class _Stream(Protocol):
    """What both plain and gzip files offer: write bytes, iterate lines."""

    def write(self, data: bytes, /) -> int: ...

    def __iter__(self) -> Iterator[bytes]: ...


@contextmanager
def _open(path: Path, write: bool) -> Iterator[_Stream]:
    """Plain or gzip by suffix. Gzip level 6: level 9 writes 3× slower for 5 % smaller files."""
    if path.suffix != ".gz":
        with path.open("wb" if write else "rb") as f:
            yield f
    elif write:
        with (
            path.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as f,
        ):
            yield f
    else:
        with gzip.GzipFile(path, "rb") as f:
            yield f


def write_log(path: str | Path, events: Iterable[Event], progress: bool = True) -> int:
    """Write events as JSONL (gzip for `.gz`); return how many were written."""
    path = Path(path)
    started = time.perf_counter()
    count = 0
    with _open(path, write=True) as out:
        for event in tqdm(events, disable=not progress, unit="ev", desc=f"write {path.name}"):
            key = event.key()
            key_json = json.dumps(key.decode()).encode() if key else b"null"
            topic = event.topic_field.encode()
            out.write(b'{"topic":"%s","key":%s,"value":%s}\n' % (topic, key_json, event.to_json()))
            count += 1
    log.info("event log written", path=str(path), events=count, seconds=time.perf_counter() - started)
    return count


def _records(path: Path) -> Iterator[tuple[int, str, bytes | None, bytes]]:
    """(line number, topic field, key, value) of every non-blank line."""
    with _open(path, write=False) as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            match = _LINE.match(line)
            if match:
                topic, key, value = match.groups()
                yield lineno, topic.decode(), None if key == b"null" else key[1:-1], value
            else:
                yield lineno, *_parse_line(path, lineno, line)


def _parse_line(path: Path, lineno: int, line: bytes) -> tuple[str, bytes | None, bytes]:
    """The general case: any JSON spelling of a record (other writers, hand-edited logs)."""
    try:
        record = json.loads(line)
        topic, key, value = record["topic"], record["key"], record["value"]
    except (ValueError, TypeError, KeyError) as exc:
        raise EventLogError(f"{path}:{lineno}: not an event-log record ({exc!r})") from None
    if not isinstance(topic, str) or not (key is None or isinstance(key, str)):
        raise EventLogError(f"{path}:{lineno}: topic must be a string and key a string or null")
    if isinstance(value, str):
        payload = value.encode()
    else:
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return topic, None if key is None else key.encode(), payload


def read_log(path: str | Path) -> Iterator[tuple[str, bytes | None, bytes]]:
    """(topic field, key, value bytes) per line, values not validated: what a replay publishes."""
    for _, topic, key, value in _records(Path(path)):
        yield topic, key, value


def read_events(path: str | Path) -> Iterator[Event]:
    """Parsed, validated events; a bad line raises EventLogError naming the file and line."""
    path = Path(path)
    for lineno, topic, _, value in _records(path):
        model = MODELS.get(topic)
        if model is None:
            raise EventLogError(f"{path}:{lineno}: unknown topic {topic!r}")
        try:
            yield parse_event(model, value)
        except BadEvent as exc:
            raise EventLogError(f"{path}:{lineno}: {exc}") from None
