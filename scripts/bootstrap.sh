#!/usr/bin/env bash
# Create the project venv and install sokures with its dev extras. Idempotent.
# On a fresh Debian machine where `python3 -m venv` lacks ensurepip, installs
# python3-venv through apt when running as root.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

"$PYTHON" - <<'PY' || { echo "sokures needs Python 3.11 or newer" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [[ ! -x $VENV/bin/python ]]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python${ver}-venv" python3-venv >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
      "$PYTHON" -m venv "$VENV"
    else
      echo "cannot create a venv: install python3-venv (apt-get install python3-venv)" >&2
      exit 2
    fi
  fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# compat mode: the project folder goes on sys.path as a path entry, so a folder named
# like one of our packages in the working directory (a lab directory called "lab")
# cannot shadow it, as it can with setuptools' default editable finder
"$VENV/bin/python" -m pip install -q -e ".[dev]" --config-settings editable_mode=compat
