"""The run manifest: every object a run creates, listed before it exists (no privileges).

Every namespace, veth, cgroup, VM and process a run creates is written here
*before* it is created and struck off once it is gone; the file is replaced
atomically on every change, so a crash at any moment leaves a manifest that
lists at least what exists.  Teardown and `gamebed clean` (gamebed/resources.py)
remove exactly what a manifest lists: nothing is ever removed by name pattern.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

STATE_DIR = Path(os.environ.get("GAMEBED_STATE_DIR", "/run/gamebed"))
# guests' files (disks, overlays, consoles, results directories): listed as "dir" entries
VM_DIR = Path(os.environ.get("GAMEBED_VM_DIR", "/var/lib/gamebed"))


def new_prefix() -> str:
    """Per-run name prefix: short enough for 15-character interface names."""
    return "gb" + secrets.token_hex(3)


class Manifest:
    """A JSON list of created objects, rewritten atomically on every change."""

    def __init__(self, prefix: str, state_dir: Path | None = None, dry_run: bool = False) -> None:
        self.prefix = prefix
        self.dry_run = dry_run
        self.path = (state_dir or STATE_DIR) / f"{prefix}.json"
        self.entries: list[dict] = []
        if not dry_run:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._save()

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(Path(path).read_text())
        m = cls.__new__(cls)
        m.prefix, m.dry_run, m.path = data["prefix"], False, Path(path)
        m.entries = data["entries"]
        return m

    def _save(self) -> None:
        if self.dry_run:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"prefix": self.prefix, "entries": self.entries}, indent=1))
        os.replace(tmp, self.path)

    def add(self, **entry) -> dict:
        self.entries.append(entry)
        self._save()
        return entry

    def remove(self, entry: dict) -> None:
        if entry in self.entries:
            self.entries.remove(entry)
            self._save()

    def close(self) -> None:
        """Drop the manifest file once nothing it lists remains."""
        if not self.dry_run and not self.entries:
            self.path.unlink(missing_ok=True)


