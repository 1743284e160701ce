"""R inside hpcml tasks (rpy2). R kinds are model kinds like any other.

``bridge`` starts one embedded R per worker process, on first use only; ``kinds`` holds the
``r`` (an R function) and ``rscript`` kinds, ``bayesm`` the bayesm chains; ``common`` what
they share. Importing this package never starts R, so a machine without R fails only when
an R kind runs.
"""
