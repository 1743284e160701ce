"""Errors a user can act on: each problem names the field, the bad value and what is wrong."""
from __future__ import annotations

from typing import Any


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SpecError(Exception):
    """Bad input (spec, data, parameters, files). The CLI prints one line per problem, exit 2."""

    def __init__(self, problems: list[tuple[str, Any, str]]):
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    @classmethod
    def one(cls, field: str, value: Any, message: str) -> "SpecError":
        return cls([(field, value, message)])

    def lines(self) -> list[str]:
        return [f"{field}: {message} (got {_short(value)})" for field, value, message in self.problems]


class NotShared(SpecError):
    """A worker does not see what the driver sees: the run directory (``--out`` on a node's
    own disk), the data file (in-memory data under a node-local cache directory), or the
    driver's versions of numpy, hpcml, ... (another Python on the node). No task of the run
    can succeed there, so the run stops, naming the node."""


def pydantic_problems(err, prefix: str = "") -> list[tuple[str, Any, str]]:
    """A pydantic ``ValidationError`` as problems, each field under ``prefix`` (``plan.sweep.grid``)."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "job")
        # A validator's own message, without pydantic's "Value error, " before it.
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        problems.append((field, e.get("input"), msg))
    return problems


class RunFailed(Exception):
    """Some tasks failed after their retries; the run directory holds what finished."""
