"""
What a run of ``bytestreamctl`` shows: the :class:`Console` it reads and
writes, ``--json`` values, text tables, and the progress bar of a file
transfer.

Words for the user go to stderr only: stdout may be carrying a stream (for
``connect`` used as an ssh ProxyCommand) or a result a script parses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, TextIO, Tuple

#: Keys whose values are byte counts; ``--json`` makes them numbers.
NUMERIC = frozenset({"sent", "received", "size", "block-size", "offset", "length"})
#: How often the progress bar is redrawn, in seconds.
PROGRESS_INTERVAL = 0.2


@dataclass
class Console:
    """Where a run of the client reads and writes; tests pass pipes and buffers."""

    stdinFd: int
    stdoutFd: int
    out: TextIO
    err: TextIO
    environ: Mapping[str, str]
    euid: int

    @classmethod
    def system(cls) -> "Console":
        return cls(0, 1, sys.stdout, sys.stderr, os.environ, os.geteuid())

    def say(self, message: str) -> None:
        """``bytestreamctl: <message>`` on stderr, at once."""
        self.err.write("bytestreamctl: %s\n" % message)
        self.err.flush()


def jsonValue(key: str, value: str) -> Any:
    """A control-socket value as ``--json`` shows it: byte counts as numbers."""
    if key in NUMERIC and value.isascii() and value.isdigit():
        return int(value)
    return value


def printJSON(console: Console, obj: Any, indent: Optional[int] = 2) -> None:
    console.out.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
    console.out.flush()


def writeFields(out: TextIO, pairs: Sequence[Tuple[str, str]]) -> None:
    """``key  value`` lines, the values aligned in one column."""
    width = max([len(key) for key, _ in pairs] + [0])
    for key, value in pairs:
        out.write("%-*s  %s\n" % (width, key, value))


def writeTable(out: TextIO, titles: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A header and rows in left-aligned columns, without trailing blanks."""
    table: List[Sequence[str]] = [titles]
    table.extend(rows)
    widths = [max(len(r[i]) for r in table) for i in range(len(titles))]
    for r in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def human(count: float) -> str:
    """A byte count in binary units, e.g. ``3.1 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024.0
    return "%d B" % count  # pragma: no cover


class ProgressBar:
    """
    ``name  3.1 MiB / 5.0 MiB  62%  1.2 MiB/s`` redrawn in place on stderr --
    only when stderr is a terminal: a log file or a pipe gets no bar.
    """

    def __init__(self, err: TextIO, label: str, total: int, start: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 enabled: Optional[bool] = None):
        self.err = err
        self.label = label
        self.total = total
        self.start = start
        self.clock = clock
        if enabled is None:
            isatty = getattr(err, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.began = clock()
        self.lastDraw: Optional[float] = None
        self.done = start
        self.width = 0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        if not force and self.lastDraw is not None and now - self.lastDraw < PROGRESS_INTERVAL:
            return
        self.lastDraw = now
        elapsed = max(now - self.began, 1e-6)
        rate = (done - self.start) / elapsed
        pct = 100 if not self.total else int(done * 100 / self.total)
        line = "%s  %s / %s  %3d%%  %s/s" % (self.label, human(done), human(self.total),
                                          pct, human(rate))
        self.err.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.err.flush()

    def finish(self) -> None:
        if self.enabled and self.lastDraw is not None:
            self.update(self.done, force=True)
            self.err.write("\n")
            self.err.flush()

    @property
    def seconds(self) -> float:
        return self.clock() - self.began
