"""One progress line on stderr, for training epochs and streaming prediction alike.

It redraws in place only on a terminal, so logs and pipes get no carriage-return noise; a
finished line is always written when asked for, so a log still shows each epoch's result.
"""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """A one-line status with a live part (redrawn on a terminal) and an optional final line."""

    def __init__(self, enabled: bool, live: bool = True, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and live and self.stream.isatty()
        self.started = time.perf_counter()
        self.shown = False

    @property
    def elapsed(self) -> float:
        """Seconds since the line started."""
        return time.perf_counter() - self.started

    def show(self, status: str) -> None:
        """Redraw the live line (terminals only)."""
        if self.tty:
            self.stream.write(f"\r{status}  ")
            self.stream.flush()
            self.shown = True

    def finish(self, status: str | None = None) -> None:
        """End the line: with ``status``, write it as the final line (terminal or not)."""
        if status is not None and self.enabled:
            self.stream.write(("\r" if self.tty else "") + status + "\n")
            self.stream.flush()
        elif self.shown:
            self.stream.write("\n")
            self.stream.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#####.....] done/total``."""
    filled = int(width * done / max(1, total))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
