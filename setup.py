"""The one compiled part of hpcml, built where a C compiler is found: the bootstrap's seeded
draws (hpcml/numerics/_seeded_draws.c). Without it, the same numbers come from NumPy."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("hpcml.numerics._seeded_draws", ["hpcml/numerics/_seeded_draws.c"],
                             extra_compile_args=["-O3"], optional=True)])
