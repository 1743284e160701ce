"""Progress: a rich bar on a terminal, plain log lines otherwise (batch logs stay readable)."""
from __future__ import annotations

import logging
import sys
import time

from hpcml.report.console import interactive

log = logging.getLogger("hpcml")


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 10.0):
        self.total, self.label, self.enabled = total, label, enabled
        self.done = self.failed = 0
        self._every_s, self._last = every_s, time.monotonic()
        self._bar = None
        if enabled and interactive(sys.stderr):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("failed {task.fields[failed]}"), TimeRemainingColumn(), transient=True)
            self._task = self._bar.add_task(label, total=total, failed=0)
            self._bar.start()

    def advance(self, ok: int, failed: int) -> None:
        self.done += ok + failed
        self.failed += failed
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, failed=self.failed)
        elif self.enabled and (time.monotonic() - self._last >= self._every_s or self.done >= self.total):
            self._last = time.monotonic()
            log.info("%s: %d/%d tasks done, %d failed", self.label, self.done, self.total, self.failed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
