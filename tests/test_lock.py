"""constraints.txt, the pinned and tested dependency set, agrees with pyproject.toml and with this environment."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import REPO

REFRESH = "refresh it with `pip install uv && python .ci/lock.py`"


def _lock_module():
    spec = importlib.util.spec_from_file_location("finsent_lock", REPO / ".ci" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins(text: str) -> dict[str, list[tuple[Version, Marker | None]]]:
    """name -> [(version, marker)] of every ``name==version [; marker]`` line."""
    out: dict[str, list[tuple[Version, Marker | None]]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+))?$", line)
        if m:
            marker = Marker(m.group(3)) if m.group(3) else None
            out.setdefault(canonicalize_name(m.group(1)), []).append((Version(m.group(2)), marker))
    return out


@pytest.fixture(scope="module")
def lock():
    return _lock_module()


@pytest.fixture(scope="module")
def pins(lock) -> dict[str, list[tuple[Version, Marker | None]]]:
    return _pins(lock.LOCK.read_text(encoding="utf-8"))


def test_the_lock_was_made_from_this_pyproject(lock) -> None:
    assert lock.recorded_digest() == lock.digest(), f"pyproject.toml's dependencies changed since constraints.txt; {REFRESH}"


def test_every_requirement_is_pinned_within_its_range(lock, pins) -> None:
    problems = []
    for group, reqs in lock.requirements().items():
        for text in reqs:
            req = Requirement(text)
            found = pins.get(canonicalize_name(req.name))
            if not found:
                problems.append(f"{group}: {text}: not pinned")
            for version, _ in found or []:
                if not req.specifier.contains(version, prereleases=True):
                    problems.append(f"{group}: {text}: pinned at {version}")
    assert not problems, f"constraints.txt disagrees with pyproject.toml ({REFRESH}): " + "; ".join(problems)


def test_torch_is_pinned_and_cuda_runtime_left_out(lock, pins) -> None:
    assert [str(v) for v, _ in pins["torch"]] == [lock.TORCH.split("==")[1]]
    assert not [name for name in pins if lock.CUDA_ONLY.match(name)]


def test_a_changed_requirement_changes_the_digest(lock, tmp_path: Path) -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace('"transformers>=5.0,<6"', '"transformers>=5.1,<6"'), encoding="utf-8")
    assert lock.digest(changed) != lock.digest()
    changed.write_text(text.replace('"rich>=13.7",', '"rich >= 13.7",'), encoding="utf-8")  # spacing only
    assert lock.digest(changed) == lock.digest()


def test_this_environment_is_the_pinned_set(pins) -> None:
    """The README's install commands pass constraints.txt to pip: every pinned package that is installed here has
    its pinned version (a mismatch means the environment was not installed that way, or drifted since)."""
    wrong = []
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        for version, marker in pins.get(name, []):
            if (marker is None or marker.evaluate()) and Version(dist.version).public != str(version):
                wrong.append(f"{name} {dist.version} (pinned {version})")
    assert not wrong, "installed versions differ from constraints.txt: " + ", ".join(sorted(set(wrong)))
