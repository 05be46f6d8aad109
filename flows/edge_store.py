"""The dedupe state of one Kafka partition kept beside Bytewax's recovery store, so an
epoch's snapshot costs what the epoch changed, not what the partition has seen in the
dedupe TTL.

Guarantee: resuming at a snapshot's generation gives exactly the edge map the stage held
when it took that snapshot, as long as the resume is among the last ``KEEP_GENERATIONS``
written (Bytewax resumes at its last committed epoch, one or two behind). A generation
is committed (``synchronous=FULL``) before the snapshot that names it is returned to
Bytewax, and a resume first deletes every later generation, so a crash between the two
is harmless. A resume whose generation the files do not hold (lost, or restored apart
from the recovery store) raises instead of deduping against a wrong map.

Layout: append-only segments. A segment file starts with the whole map at its base
generation and then takes each later generation's changed edges (appended in key
order, so a write touches few pages). When a segment holds more than twice the live
edges, or the TTL forgot edges, the next generation starts a new segment; older
segments are deleted once no resumable generation needs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

KEEP_GENERATIONS = 8
MIN_SEGMENT_ROWS = 10_000
Row = tuple[int, int, int, int, int]  # post, user, version, liked, seen_s

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS edges (gen INTEGER NOT NULL, post INTEGER NOT NULL,"
    " usr INTEGER NOT NULL, version INTEGER NOT NULL, liked INTEGER NOT NULL,"
    " seen_s INTEGER NOT NULL, PRIMARY KEY (gen, post, usr)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS generations (gen INTEGER PRIMARY KEY, row_count INTEGER)",
)


@dataclass(frozen=True, slots=True)
class StoredEdges:
    """A dedupe snapshot whose edges are in the partition's edge store at ``gen``."""

    gen: int
    max_ms: int


class MissingGeneration(RuntimeError):
    """The edge store cannot give the state a snapshot names."""


class _Segment:
    def __init__(self, path: Path, base: int) -> None:
        self.path = path
        self.base = base
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        for ddl in _SCHEMA:
            self.db.execute(ddl)
        self.rows = self._rows_written()

    def _rows_written(self) -> int:
        last = self.db.execute("SELECT row_count FROM generations ORDER BY gen DESC LIMIT 1")
        return int((last.fetchone() or (0,))[0])

    def has(self, gen: int) -> bool:
        return (
            self.db.execute("SELECT 1 FROM generations WHERE gen = ?", (gen,)).fetchone()
            is not None
        )

    def truncate_after(self, gen: int) -> None:
        db = self.db
        db.execute("BEGIN")
        db.execute("DELETE FROM edges WHERE gen > ?", (gen,))
        db.execute("DELETE FROM generations WHERE gen > ?", (gen,))
        db.execute("COMMIT")
        self.rows = self._rows_written()

    def append(self, gen: int, rows: Iterable[Row]) -> None:
        db = self.db
        db.execute("BEGIN")
        cur = db.executemany(
            "INSERT OR REPLACE INTO edges VALUES (?6, ?1, ?2, ?3, ?4, ?5)",
            ((*row, gen) for row in rows),
        )
        self.rows += max(cur.rowcount, 0)
        db.execute("INSERT OR REPLACE INTO generations VALUES (?, ?)", (gen, self.rows))
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class EdgeStore:
    """Partition ``partition``'s segments under ``directory``."""

    def __init__(self, directory: Path, partition: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.prefix = f"partition-{partition}."
        self._current: _Segment | None = None
        self._bases: list[int] = []  # the segments held, oldest first (listed at resume)

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob(f"{self.prefix}*.sqlite3"):
            base = path.name[len(self.prefix) : -len(".sqlite3")]
            if base.isdigit():
                found.append((int(base), path))
        return sorted(found)

    def _path(self, base: int) -> Path:
        return self.directory / f"{self.prefix}{base:012d}.sqlite3"

    @staticmethod
    def _remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

    def resume(self, gen: int) -> Iterator[Row]:
        """Each edge's rows as of generation ``gen`` (0: none), oldest generation first
        (an edge's last row is its state); later generations are dropped."""
        segments = self._segments()
        usable = [(base, path) for base, path in segments if base <= gen]
        for base, path in segments:
            if base > gen or gen == 0:
                self._remove(path)
        if gen == 0:
            self._bases = []
            return iter(())
        segment = _Segment(usable[-1][1], usable[-1][0]) if usable else None
        if segment is None or not segment.has(gen):
            raise MissingGeneration(
                f"{self.directory} holds no generation {gen} of {self.prefix[:-1]}, which "
                "the recovery store's snapshot names (lost, or restored apart from it); "
                "`likes flows-reset` rebuilds the flows' state"
            )
        segment.truncate_after(gen)
        self._current = segment
        self._bases = [base for base, _ in usable]
        return segment.db.execute(
            "SELECT post, usr, version, liked, seen_s FROM edges ORDER BY gen, post, usr"
        )

    def write(
        self,
        gen: int,
        changed: Sequence[Row],
        live: int,
        everything: Callable[[], Iterable[Row]],
        new_segment: bool = False,
    ) -> None:
        """Commit generation ``gen``: the ``changed`` edges' rows, or (in a new segment,
        when asked, at first, or when the current one holds more than twice the ``live``
        edges) ``everything``."""
        current = self._current
        if (
            new_segment
            or current is None
            or current.rows + len(changed) > max(2 * live, MIN_SEGMENT_ROWS)
        ):
            path = self._path(gen)
            self._remove(path)
            segment = _Segment(path, gen)
            segment.append(gen, everything())
            if current is not None:
                current.close()
            self._current = segment
            self._bases.append(gen)
        else:
            current.append(gen, changed)
        self._prune(gen)

    def _prune(self, gen: int) -> None:
        """Delete the segments that no generation after ``gen - KEEP_GENERATIONS`` needs."""
        oldest_resumable = gen - KEEP_GENERATIONS + 1
        needed = [
            base
            for base, next_base in zip(self._bases, [*self._bases[1:], None], strict=True)
            if next_base is None or next_base > oldest_resumable
        ]
        for base in set(self._bases) - set(needed):
            self._remove(self._path(base))
        self._bases = needed

    def rows(self) -> int:
        """Rows in all segments (for tests and diagnostics)."""
        total = 0
        for _, path in self._segments():
            with closing(sqlite3.connect(path)) as db:
                total += int(db.execute("SELECT count(*) FROM edges").fetchone()[0])
        return total

    def segments(self) -> int:
        """Segment files held (for tests and diagnostics)."""
        return len(self._segments())
