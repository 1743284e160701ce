# Names the task closures (tasks.R) find in their own environment on the worker, not here.
utils::globalVariables(c(".hpcml_FUN", ".hpcml_X", ".hpcml_args", ".hpcml_body", ".hpcml_data", ".hpcml_dots",
                         ".hpcml_exports", ".hpcml_expr", ".hpcml_idx", ".hpcml_n", ".hpcml_ns",
                         ".hpcml_packages", ".hpcml_sets", ".hpcml_statistic", ".hpcml_stype", ".hpcml_walk"))
