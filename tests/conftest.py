"""pytest's hooks and fixtures: markers by directory, a per-session accelerator cache,
and fixtures over the skip helpers of tests/support."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.support import ROOT, skip_unless_chromium, skip_unless_clang, skip_unless_netns


def pytest_configure(config):
    """No test may lean on an accelerator decision cached in /run by an earlier run: the
    session (and the gamebed processes it starts) gets a cache of its own."""
    if "GAMEBED_ACCEL_CACHE" not in os.environ:
        os.environ["GAMEBED_ACCEL_CACHE"] = str(
            Path(tempfile.mkdtemp(prefix="gamebed-test-")) / "accel.json")


def pytest_collection_modifyitems(config, items):
    for item in items:
        part = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if part in ("unit", "net", "vm"):
            item.add_marker(getattr(pytest.mark, part))


@pytest.fixture
def chromium_ok():
    skip_unless_chromium()


@pytest.fixture
def netns_ok():
    skip_unless_netns()
    skip_unless_clang()


@pytest.fixture(autouse=True)
def _unit_tests_see_a_v1_host(request):
    """A unit test's dry run prints the commands of this machine kind's cgroup layout
    (v1 controllers beside an empty cgroup2 mount) on any host; tests/net and tests/vm
    use the host's own, and unit tests of other layouts pin theirs inside."""
    if Path(str(request.node.fspath)).relative_to(ROOT / "tests").parts[0] != "unit":
        yield
        return
    from gamebed.cgroups import pinned_layout
    from tests.support import cgroup_layout

    with pinned_layout(cgroup_layout("hybrid")):
        yield
