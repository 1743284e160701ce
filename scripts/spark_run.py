#!/usr/bin/env python
"""spark-submit entry for a source checkout (hpcml/spark_submit.py is the installed one).

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit --master spark://127.0.0.1:7077 \
        scripts/spark_run.py job.yaml --out runs/job [--resume] [--overwrite] [--quiet]

Runs ``hpcml run`` on the Spark backend; spark-submit's --master picks the cluster.
"""
import os
import sys

# The checkout's package wins over an installed copy.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hpcml.spark_submit import main  # noqa: E402

if __name__ == "__main__":
    main()
