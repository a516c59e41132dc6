"""JSON Schema files for the event contracts, so clients in any language can validate messages."""

from __future__ import annotations

import json
from pathlib import Path

from core.events import EVENT_TYPES, Event
from core.settings import Topics

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def schema_for(model: type[Event]) -> dict[str, object]:
    """The model's JSON Schema, with the topic it travels on and a stable $id."""
    topic = getattr(Topics(), model.topic_field)
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"hotvideo/{topic}.schema.json",
        "x-topic": topic,
        **schema,
    }


def render(model: type[Event]) -> str:
    return json.dumps(schema_for(model), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def file_name(model: type[Event]) -> str:
    return f"{getattr(Topics(), model.topic_field)}.schema.json"


def write_all(out: Path = SCHEMA_DIR) -> list[Path]:
    """Write one file per event type; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in EVENT_TYPES:
        path = out / file_name(model)
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    return paths
