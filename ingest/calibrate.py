"""How the simulator's hot videos compare with real hot-list captures.

`hotvideo simulate --calibrate-against DIR` reads the real 综合热门 captures in DIR (the repository
keeps them in data/bili-popular; read by ingest/captures.py) and the simulated list as the same daily
capture sees it (`world.capture_hot`), and reports two-sample Kolmogorov–Smirnov distances per
property and the total-variation distance of main-zone shares. Every property is compared as the
capture sees it, one row per (capture, listed video), on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from core.reference import BEIJING_OFFSET_S, ZONE_OF_TID
from ingest.captures import CAPTURE_HOUR, captures
from ingest.world import WorldConfig, capture_hot

FloatArray = NDArray[np.float64]

RATES = ("like", "coin", "favorite", "reply", "danmaku", "share")
KS_LIMIT, TV_LIMIT = 0.15, 0.25
AGE_BINS = 8
"""views are compared at matching ages: the simulated rows are reweighted to the real rows' share in
each of this many age-at-capture quantile bins"""


@dataclass(frozen=True)
class Sample:
    """Hot-list rows, one per (capture, listed video)."""

    follower: FloatArray
    view: FloatArray
    age_h: FloatArray
    duration: FloatArray
    rates: FloatArray
    """(rows, 6) in RATES order"""
    hour: FloatArray
    """publish hour, Beijing, with minutes as a fraction"""
    zone: list[str]
    """main zone tid, or "other" """


def _zone(tid: int) -> str:
    main = ZONE_OF_TID.get(tid)
    return "other" if main is None else str(main)


def _hour(pubdate: NDArray[np.int64]) -> FloatArray:
    return ((pubdate + BEIJING_OFFSET_S) % 86400) / 3600.0


def load_real(folder: Path) -> Sample:
    """Every item of every capture file in `folder` (ingest/captures.py: plain or gzipped days)."""
    cols: dict[str, list[float]] = {k: [] for k in ("follower", "view", "age", "duration", "pub", "tid")}
    rates: list[list[float]] = []
    for capture in captures(folder):
        for item in capture.payload().get("list", []):
            stat, owner = item.get("stat") or {}, item.get("owner") or {}
            view = stat.get("view")
            if not isinstance(view, int) or not isinstance(item.get("pubdate"), int):
                continue
            cols["follower"].append(float(owner.get("follower") or 0))
            cols["view"].append(view)
            cols["age"].append((capture.at - item["pubdate"]) / 3600.0)
            cols["duration"].append(float(item.get("duration") or 0))
            cols["pub"].append(item["pubdate"])
            cols["tid"].append(int(item.get("tid") or 0))
            rates.append([(stat.get(r) or 0) / max(view, 1) for r in RATES])
    if not rates:
        raise ValueError(f"no capture items in {folder}")
    return Sample(
        follower=np.array(cols["follower"]),
        view=np.array(cols["view"], dtype=float),
        age_h=np.array(cols["age"]),
        duration=np.array(cols["duration"]),
        rates=np.array(rates),
        hour=_hour(np.array(cols["pub"], dtype=np.int64)),
        zone=[_zone(int(t)) for t in cols["tid"]],
    )


def simulated(cfg: WorldConfig, videos: int = 300_000, days: int = 14) -> Sample:
    """The simulated list over `days` daily captures of a world of `videos` (its seed and rule)."""
    cap = capture_hot(cfg, videos, days, CAPTURE_HOUR)
    return Sample(
        follower=cap.follower.astype(float),
        view=cap.view,
        age_h=cap.age_h,
        duration=cap.duration.astype(float),
        rates=cap.rates,
        hour=_hour(cap.pubdate),
        zone=[_zone(int(t)) for t in cap.tid],
    )


def ks(a: FloatArray, b: FloatArray, wb: FloatArray | None = None) -> float:
    """Two-sample Kolmogorov–Smirnov distance, `b` optionally weighted."""
    wb = np.ones(len(b)) if wb is None else wb
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    order = np.argsort(b)
    cum = np.concatenate(([0.0], np.cumsum(wb[order]))) / wb.sum()
    cdf_b = cum[np.searchsorted(b[order], grid, side="right")]
    return float(np.abs(cdf_a - cdf_b).max())


def _age_weights(real_age: FloatArray, sim_age: FloatArray) -> FloatArray:
    """Weights that give the simulated rows the real rows' age-at-capture distribution."""
    edges = np.quantile(real_age, np.linspace(0, 1, AGE_BINS + 1)[1:-1])
    real_bin, sim_bin = np.searchsorted(edges, real_age), np.searchsorted(edges, sim_age)
    real_share = np.bincount(real_bin, minlength=AGE_BINS) / len(real_age)
    sim_count = np.bincount(sim_bin, minlength=AGE_BINS).astype(float)
    return real_share[sim_bin] / np.maximum(sim_count[sim_bin], 1.0)


def tv(a: list[str], b: list[str]) -> float:
    """Total-variation distance of two category shares."""
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.count(k) / len(a) - b.count(k) / len(b)) for k in keys)


def distances(real: Sample, sim: Sample) -> dict[str, float]:
    """Every distance of the report, by name."""
    out = {
        "log10 owner followers": ks(np.log10(real.follower + 1), np.log10(sim.follower + 1)),
        "log10 views at age of capture": ks(
            np.log10(real.view + 1), np.log10(sim.view + 1), _age_weights(real.age_h, sim.age_h)
        ),
        "age at capture (h)": ks(real.age_h, sim.age_h),
        "duration (s)": ks(real.duration, sim.duration),
        **{f"{name} per view": ks(real.rates[:, k], sim.rates[:, k]) for k, name in enumerate(RATES)},
        "publish hour (Beijing)": ks(real.hour, sim.hour),
    }
    out["zone shares (TV)"] = tv(real.zone, sim.zone)
    return out


def report(real_dir: Path, cfg: WorldConfig, videos: int = 300_000, days: int = 14) -> tuple[str, bool]:
    """The printed report and whether every distance is within its limit."""
    real, sim = load_real(real_dir), simulated(cfg, videos, days)
    lines = [
        f"real: {len(real.view)} hot-list rows from {real_dir}",
        f"simulated: {len(sim.view)} rows, {days} daily captures of {videos} videos (seed {cfg.seed})",
        f"{'property':34} {'distance':>8}  limit",
    ]
    ok = True
    for name, value in distances(real, sim).items():
        limit = TV_LIMIT if "TV" in name else KS_LIMIT
        ok = ok and value <= limit
        lines.append(f"{name:34} {value:8.3f}  {'TV' if 'TV' in name else 'KS'} <= {limit}")
    lines.append("all within limits" if ok else "SOME DISTANCES EXCEED THEIR LIMITS")
    return "\n".join(lines), ok
