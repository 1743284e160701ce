"""The ``mpi`` backend: rank 0's scheduler for dynamic packing (``backend``, ``scheduler``),
what all ranks share (``session``), bounded waits on lost ranks (``liveness``), options.
Running a job on every rank of a launch is the MPI driver's (``hpcml.drivers.mpi``)."""
from hpcml.backends.mpi.backend import MPIBackend
from hpcml.backends.mpi.options import MPIOptions

__all__ = ["MPIBackend", "MPIOptions"]
