"""The whole data set as a user's function gets it: read-only.

The data set is loaded once per process and cached (``data/sources.py``): every later task
and every later job of the process (a kept worker, an R or Python session calling
``hpcml.bootstrap`` again) gets the same arrays. A function that changed them in place
(``x *= 2``, ``x.sort()``, ``df.iloc[0, 0] = ...``) would change all those numbers. So the whole
data is handed over as read-only views (large data, mapped from a file, always was): such a
change raises where it is made. A resampled copy is the task's own and stays writable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hpcml.models.base import Dataset

# id(data.X) -> (data.X, its DataFrame): a few data sets at a time.
FRAMES: dict[int, tuple[Any, Any]] = {}


def read_only(a: np.ndarray) -> np.ndarray:
    """A view of ``a`` that cannot be written (``a`` itself if it already cannot)."""
    if not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def whole_frame(data: Dataset):
    """The data as a DataFrame, built once per process over a read-only view of it; each call
    gets a shallow copy of its own, so a column the function sets or drops is its own."""
    import pandas as pd  # loaded only for a function that takes a DataFrame

    cached = FRAMES.get(id(data.X))
    if cached is None or cached[0] is not data.X:
        frame = pd.DataFrame(read_only(np.asarray(data.X)), columns=data.features)
        if len(FRAMES) > 2:
            FRAMES.clear()
        cached = FRAMES[id(data.X)] = (data.X, frame)
    return cached[1].copy(deep=False)
