"""A spec from a YAML file or a mapping: safe YAML of at most 1 MB, dotted overrides, a
backend chosen elsewhere dropping the spec's own backend options, paths made absolute."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import yaml

from hpcml.errors import SpecError
from hpcml.spec.checks import validate_spec
from hpcml.spec.job import Job
from hpcml.spec.paths import absolute_paths


class _SpecLoader(yaml.SafeLoader):
    """YAML without aliases (``*name``: an alias bomb expands a 1 KB file into billions of
    nodes) and without duplicate keys (the second would silently win)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not supported in a job "
                                              "spec; write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# A job spec is a page of settings; anything this large is a mistake (or an attack).
MAX_SPEC_BYTES = 1 << 20


def read_spec_file(path: str | Path) -> dict:
    path = Path(path)
    if "\x00" in str(path):
        raise SpecError.one("spec", str(path), "a path cannot contain a NUL byte")
    if not path.is_file():
        raise SpecError.one("spec", str(path), "file not found")
    with open(path, "rb") as fh:  # read no more than the cap, even from a file still growing
        text = fh.read(MAX_SPEC_BYTES + 1)
    if len(text) > MAX_SPEC_BYTES:  # YAML parses slowly and into many objects: 50 MB took minutes and a GB
        size = max(path.stat().st_size, len(text))
        raise SpecError.one("spec", str(path), f"{size:,} bytes; a job spec is at most {MAX_SPEC_BYTES:,} bytes "
                            "(put data in data.source, not in the spec)")
    try:
        raw = yaml.load(text.decode("utf-8"), Loader=_SpecLoader)
    except (UnicodeDecodeError, ValueError):
        raise SpecError.one("spec", str(path), "not a text file (a YAML job spec is UTF-8 text)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise SpecError.one("spec", str(path), f"not valid YAML at {where}: {getattr(err, 'problem', err)}") from None
    return raw


COMMON_BACKEND_KEYS = ("name", "workers", "chunk_size")


def _drop_other_backend_options(raw: dict, new_name: str | None) -> None:
    """One spec, every backend: a backend chosen on the command line or in the API drops the
    options the spec gives its own backend, with one note."""
    backend = raw.get("backend")
    if new_name is None or not isinstance(backend, dict) or backend.get("name", "local") == new_name:
        return
    dropped = sorted(k for k in backend if k not in COMMON_BACKEND_KEYS)
    if dropped:
        logging.getLogger("hpcml").warning("note: running on %s; ignoring the spec's %s options: %s", new_name,
                                           backend.get("name", "local"), ", ".join(dropped))
        raw["backend"] = {k: v for k, v in backend.items() if k in COMMON_BACKEND_KEYS}


def load_job(source: str | Path | dict, **overrides: Any) -> Job:
    """Load and validate a spec from a YAML path or a mapping; ``overrides`` are dotted fields."""
    raw = copy.deepcopy(source) if isinstance(source, dict) else read_spec_file(source)
    if not isinstance(raw, dict):
        raise SpecError.one("job", raw, "the spec must be a mapping of fields")
    _drop_other_backend_options(raw, overrides.get("backend.name"))
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = value
    return validate_spec(absolute_paths(raw))
