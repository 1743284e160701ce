#!/usr/bin/env bash
# Creates .venv with hpcml and the extras named in $1 (default: all; `core` for none). Idempotent.
set -euo pipefail
extras="${1:-all}"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${HPCML_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null
case ",$extras," in
  *,all,*|*,torch,*)
    # The pinned CPU build first: otherwise a dependency asking for torch pulls CUDA.
    $venv/bin/python -c "import torch" 2>/dev/null || $pip install -q "torch==2.13.0" ;;
esac
if [ "$extras" = core ]; then
  $pip install -q -e "$here"
else
  $pip install -q -e "$here[$extras]"
fi
