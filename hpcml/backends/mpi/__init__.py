"""MPI packing: a job's tasks on the ranks of one MPI launch (mpirun, srun, ibrun)."""
from hpcml.backends.mpi.run import MPIBackend, MPIOptions, RankLost, rank_share, run_under_mpi, wait_message

__all__ = ["MPIBackend", "MPIOptions", "RankLost", "rank_share", "run_under_mpi", "wait_message"]
