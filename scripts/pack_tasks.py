#!/usr/bin/env python3
"""Pack a job's tasks onto MPI ranks: `mpirun|srun|ibrun python scripts/pack_tasks.py job.yaml`.

The same as `python -m hpcml.pack`; see docs/backends/mpi.md for the options.
"""
import sys

from hpcml.pack import main

if __name__ == "__main__":
    sys.exit(main())
