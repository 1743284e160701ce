"""hpcml: write a parallel analysis once; run it on a laptop, Dask, Slurm/PBS, MPI or Spark.

    >>> import hpcml
    >>> result = hpcml.run("bootstrap.yaml", backend="local", workers=2)
    >>> result.results      # pandas DataFrame, one row per task
    >>> result.summary      # dict: SE, percentile and BCa intervals, ...
    >>> hpcml.map(simulate, range(500), backend="dask")        # your own function, in order
    >>> hpcml.bootstrap(np.median, x, replicates=2000).bca     # any statistic, any backend
"""
from .errors import RunFailed, SpecError
from .runner import RunResult, run
from .spec import Job, json_schema, load_job
from .user_api import BootstrapResult, bootstrap, map  # noqa: A004  (hpcml.map, not the builtin)

__all__ = ["run", "map", "bootstrap", "BootstrapResult", "RunResult", "load_job", "Job", "json_schema", "SpecError", "RunFailed", "__version__"]
__version__ = "0.1.0"
