#!/usr/bin/env bash
# Installs the Debian packages hpcml's real components need: R (with doParallel, bayesm,
# reticulate, roxygen2, which writes the R package's NAMESPACE and man pages, and pkgbuild,
# which testthat::test_local() needs to compile the package's C code), Open MPI,
# Slurm + munge, Fashion-MNIST, and Chromium (the tests open each run's report.html in a real
# headless browser). Idempotent; needs root.
set -euo pipefail
pkgs=(r-base-core r-cran-doparallel r-cran-foreach r-cran-bayesm r-cran-reticulate
      r-cran-testthat r-cran-roxygen2 r-cran-jsonlite r-cran-yaml r-cran-boot r-cran-aer
      r-cran-pkgbuild build-essential python3-dev openmpi-bin libopenmpi-dev slurm-wlm munge dataset-fashion-mnist chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # --no-install-recommends: otherwise apt pulls in hundreds of unrelated r-cran packages.
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
