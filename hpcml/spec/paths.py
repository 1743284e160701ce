"""Relative paths of a spec made absolute once, where the job is loaded: they mean what they
mean in the driver's working directory, never in a worker's own."""
from __future__ import annotations

import os
import re
from typing import Any

from hpcml.models.base import get_model, model_names


_CODE_FILE = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_][\w.]*)$")


def _absolute(value: Any) -> Any:
    return os.path.abspath(value) if isinstance(value, str) and value and "\x00" not in value else value


def data_source_path(source: Any) -> Any:
    """``source`` with a relative file, directory or glob made absolute; generated data
    (``none``, ``sklearn:``, ``synthetic:``) and URLs (``hdfs://``) as they are."""
    if not isinstance(source, str) or source == "none":
        return source
    if source.startswith("idx:"):
        return "idx:" + _absolute(source[4:])
    if ":" in source.split("/")[0]:
        return source
    return _absolute(source)


def absolute_paths(raw: dict) -> dict:
    """Every path of a raw spec made absolute, once, where the job is loaded: relative paths
    mean what they mean in the working directory hpcml was started from (the driver's), never
    in a worker's own (a Dask worker started elsewhere, a Spark executor). Changes ``raw``."""
    data, model = raw.get("data"), raw.get("model")
    if isinstance(data, dict) and "source" in data:
        data["source"] = data_source_path(data["source"])
    kind = model.get("kind") if isinstance(model, dict) else None
    if isinstance(kind, str) and kind in model_names():
        try:
            params = get_model(kind).Params
        except ImportError:  # reported by validate_spec
            return raw
        for name in params.path_fields:
            if name in model:
                model[name] = _absolute(model[name])
        for name in params.code_file_fields:  # `path/to/file.py:Class`; a built-in name stays
            match = _CODE_FILE.match(model.get(name) or "") if isinstance(model.get(name), str) else None
            if match:
                model[name] = f"{_absolute(match['file'])}:{match['name']}"
    return raw
