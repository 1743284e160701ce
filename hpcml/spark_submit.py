"""Entry point for ``spark-submit``: the ``hpcml run`` command line, on the Spark backend.

    spark-submit --master spark://127.0.0.1:7077 "$(python -m hpcml.spark_submit --path)" job.yaml --out runs/x

spark-submit runs a Python *file*, so this module is also a script; every ``hpcml run`` option
works after the spec. The backend is ``spark`` unless ``--backend`` says otherwise, and with no
``spark_master`` in the spec, spark-submit's ``--master`` decides where the tasks run. Jobs with
``engine: spark`` run their MLlib fit on that same cluster.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script, this file's folder (the package itself) lands first on sys.path, where
    # its modules and folders (spec.py, data/, ...) would shadow top-level imports of the same name.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--path"]:  # where spark-submit should look for this file
        print(os.path.abspath(__file__))
        return
    from hpcml.cli import app  # after sys.path is fixed (see above)

    if not any(a in ("--backend", "-b") or a.startswith("--backend=") for a in argv):
        argv += ["--backend", "spark"]
    app(["run", *argv], prog_name="hpcml-spark-submit")


if __name__ == "__main__":
    main()
