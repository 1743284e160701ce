"""Everything that turns a job into a run directory: the one retry loop, ``finish``, and each
way a run is driven (a backend from the driver, MPI ranks, job-array elements, one Spark
MLlib fit, torch DDP ranks, batch submission)."""
