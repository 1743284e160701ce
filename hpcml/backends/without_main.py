"""Worker processes that never run the user's script again.

multiprocessing's spawn and forkserver children re-import the parent's ``__main__`` before
they do anything else, so that objects defined there can be unpickled. A plain script without
``if __name__ == "__main__":`` then runs again in every worker: the workers start workers of
their own, fail with multiprocessing's "bootstrapping phase" error, and a call that should
have returned ends in "worker process died". hpcml's workers need nothing from ``__main__``:
functions and items defined there travel by value (cloudpickle). So while hpcml starts its
workers (the local pool, a Dask LocalCluster's nannies), the preparation data multiprocessing
hands a new process leaves ``__main__`` out, as loky does for joblib.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from multiprocessing import spawn
from typing import Iterator

_LOCK = threading.Lock()
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


@contextmanager
def starting_without_main() -> Iterator[None]:
    """Processes multiprocessing starts (spawn, forkserver) inside this block do not import the
    parent's ``__main__``; a forked one never does."""
    with _LOCK:
        original = spawn.get_preparation_data

        def preparation_data(name, *args, **kwargs):
            data = original(name, *args, **kwargs)
            for key in _MAIN_KEYS:
                data.pop(key, None)
            return data

        spawn.get_preparation_data = preparation_data
        try:
            yield
        finally:
            spawn.get_preparation_data = original
