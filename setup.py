"""The one compiled part of hpcml, built where a C compiler is found: the bootstrap's seeded
draws (hpcml/numerics/_seeded_draws.c). Without it, the same numbers come from NumPy."""
from setuptools import Extension, setup

# NumPy's PCG64 arithmetic lives in one header, shared with the R package's C code.
setup(ext_modules=[Extension("hpcml.numerics._seeded_draws", ["hpcml/numerics/_seeded_draws.c"],
                             include_dirs=["R/src"], depends=["R/src/numpy_pcg64.h"],
                             extra_compile_args=["-O3"], optional=True)])
