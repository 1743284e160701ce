"""R inside hpcml tasks (rpy2) and the helpers R task kinds share.

``hpcml.r.bridge`` starts one embedded R per worker process, on first use only;
``hpcml.r.tasks`` registers the ``r`` and ``rscript`` model kinds and, through
``hpcml.r.bayesm``, the ``bayesm`` kind. Importing
this package never starts R, so a machine without R fails only when an R kind runs.
"""
