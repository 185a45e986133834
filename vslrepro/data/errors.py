"""Errors about input data, and the record of samples skipped on the user's request.

The official loaders replace a sample they cannot read with a random other one, silently. We never
do: a problem either raises a `DataError` naming the file or id and what is wrong, or — only when
the caller passes a `SkipLog` — is recorded there and the sample is left out, visibly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """A file or id of the benchmark data is missing, unreadable or malformed."""


class IncompleteDataError(DataError):
    """Listed samples whose media are missing or unreadable, in a split the caller wants complete.

    Raised instead of a plain `DataError` where the way out is to allow an incomplete split (the
    command-line `--allow-incomplete`), so that each command can name its own option:
    `with_hint` returns the same error with that sentence appended.
    """

    def with_hint(self, hint: str) -> "IncompleteDataError":
        return IncompleteDataError(f"{self}; {hint}")


def describe_left_out(entries: "list[Skipped]", limit: int = 5) -> str:
    """`id a (reason); id b (reason); ... (+n more)`: the first few samples of a skip record."""
    shown = "; ".join(entry.reason if entry.id in entry.reason else f"id {entry.id}: {entry.reason}"
                      for entry in entries[:limit])
    return shown + (f"; ... (+{len(entries) - limit} more)" if len(entries) > limit else "")


@dataclass(frozen=True)
class Skipped:
    """One sample left out: its id, the file at fault (may be empty) and why."""

    id: str
    file: str
    reason: str


@dataclass
class SkipLog:
    """Collects samples skipped on request, so that a run can report exactly what it left out."""

    entries: list[Skipped] = field(default_factory=list)

    def add(self, id: str, file: str | Path, reason: str) -> None:
        self.entries.append(Skipped(str(id), str(file), reason))

    def handle(self, error: DataError, id: str, file: str | Path = "") -> None:
        """Record `error` for sample `id` (the call site decides to skip instead of raising)."""
        self.add(id, file, str(error))

    @property
    def ids(self) -> set[str]:
        return {entry.id for entry in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def write_csv(self, path: str | Path) -> Path:
        """Write the skipped samples as `id,file,reason` rows (header included)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "file", "reason"])
            for entry in self.entries:
                writer.writerow([entry.id, entry.file, entry.reason])
        return path
