"""Folders of daily popular-list captures (the layout of data/bili-popular).

One `YYYY-MM-DD.json` or `YYYY-MM-DD.json.gz` file per day, `{"list": [archive, …]}` as the popular
endpoint answers, and an optional `manifest.csv` (`day,captured_at_approx`) with each capture's time.
The calibration report and the replay read them through here, so both accept the gzipped form the
repository keeps and the plain form a fresh download has.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.reference import BEIJING

CAPTURE_HOUR = 23.75
"""Beijing hour of a capture whose time the manifest does not give (the real ones are 23:30–23:55)"""
PATTERNS = ("????-??-??.json", "????-??-??.json.gz")


@dataclass(frozen=True)
class Capture:
    """One day's capture file and when it was taken."""

    day: str
    """YYYY-MM-DD"""
    at: float
    """capture time, epoch s"""
    path: Path

    def payload(self) -> Any:
        """The day's JSON document, decompressed if need be."""
        raw = self.path.read_bytes()
        return json.loads(gzip.decompress(raw) if self.path.suffix == ".gz" else raw)


def _files(folder: Path) -> list[Path]:
    return [path for pattern in PATTERNS for path in folder.glob(pattern)]


def is_capture_folder(path: Path) -> bool:
    """A folder with at least one daily capture file."""
    return path.is_dir() and bool(_files(path))


def captures(folder: Path) -> list[Capture]:
    """The folder's captures in capture-time order (then by day); a day given twice is an error."""
    captured: dict[str, float] = {}
    manifest = folder / "manifest.csv"
    if manifest.exists():
        with manifest.open(encoding="utf-8") as f:
            captured = {
                r["day"]: datetime.fromisoformat(r["captured_at_approx"]).timestamp()
                for r in csv.DictReader(f)
            }
    days: dict[str, Capture] = {}
    for path in _files(folder):
        day = path.name[: len("YYYY-MM-DD")]
        if day in days:
            raise ValueError(f"{folder}: {day} is given twice ({days[day].path.name}, {path.name})")
        midnight = datetime.fromisoformat(day).replace(tzinfo=BEIJING)
        at = captured.get(day, (midnight + timedelta(hours=CAPTURE_HOUR)).timestamp())
        days[day] = Capture(day, at, path)
    return sorted(days.values(), key=lambda c: (c.at, c.day))
