"""requirements.lock, the constraints `make install` installs with, pins every dependency that
pyproject.toml declares at a version it allows, and the environment under test is the locked one."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[str, str]:
    """Canonical name -> pinned version."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        pin = line.split("#")[0].strip()
        if pin:
            name, _, pinned = pin.partition("==")
            pins[canonicalize_name(name)] = pinned
    return pins


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(text)
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is not None, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pinned, prereleases=True), f"{req.name}=={pinned} outside {req}"


def test_the_installed_versions_are_the_locked_ones() -> None:
    drift = {name: (pinned, version(name)) for name, pinned in locked().items() if version(name) != pinned}
    assert not drift, f"(locked, installed) differ: run `make install` ({drift})"
