"""One run's environment: what every part of a run shares (no privileges).

Modelled on Locust's Environment: the frozen spec, the results directory, the
subprocess door (runner), the manifest of what the run creates, the progress
reporter, and the pieces the layers above the core hand in (`Layers`): the
testbed factory (vm.testbeds), the per-point summary (analysis.point.summarizer)
and the capacity search (analysis.capacity.search_step).  The sweep
(gamebed/sweep.py), `launch` (vm/launch.py) and the benchmarks take a `Run`; the
CLI only turns arguments into a spec and the layers into a `Run`.  The core
imports neither vm/ nor analysis/: they come in through `Layers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner
from gamebed.progress import Progress
from gamebed.spec import ExperimentSpec

Summarize = Callable[[Path], dict]  # a point directory → its summary.json entry
Search = Callable[[list[dict], set[int]], "int | None"]  # (points so far, counts tried)


@dataclass(frozen=True)
class Layers:
    """What the layers above the core hand a run."""

    # (run, n_guests, work_dir) → a testbed of that many guests, not yet entered
    testbeds: Callable[[Run, int, Path], Any]
    summarize: Summarize = lambda _pdir: {}
    search: Search | None = None  # --guests auto: the next count from the points so far
    boot_s_per_guest: float = 1.0  # the backend's estimate, for the progress bar only
    # summary.json's points → how fast the machine ran them (analysis/point.py)
    speed: Callable[[list[dict]], dict | None] | None = None


@dataclass
class Run:
    spec: ExperimentSpec
    out: Path
    layers: Layers
    runner: Runner
    manifest: Manifest
    progress: Progress
    reason: str = ""  # why this backend (vm.resolve_backend)

    @classmethod
    def start(cls, spec: ExperimentSpec, out: Path, layers: Layers, dry_run: bool = False,
              reason: str = "", prefix: str | None = None) -> Run:
        """A run with a new manifest (named `prefix`, else a fresh one)."""
        return cls(spec, Path(out), layers, Runner(dry_run=dry_run),
                   Manifest(prefix or new_prefix(), dry_run=dry_run), Progress(), reason)

    @property
    def dry_run(self) -> bool:
        return self.runner.dry_run

    def testbed(self, n_guests: int, work_dir: Path):
        """A testbed of `n_guests` for this run (enter it to build it)."""
        return self.layers.testbeds(self, n_guests, work_dir)
