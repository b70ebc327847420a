#!/usr/bin/env bash
# Creates benchmarks/peers/.venv, the peer tools' own environment (dlt, ADBC, pandas), pinned in
# requirements.txt beside this script. None of them is a bulkops dependency.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
if [ ! -x "$here/.venv/bin/python" ]; then
    "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "import dlt, adbc_driver_postgresql, pandas; print('peers venv ready: dlt', dlt.__version__, 'pandas', pandas.__version__)"
