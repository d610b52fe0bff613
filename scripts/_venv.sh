# Sourced by the scripts here: make sure .venv exists and holds the project.
# Installing is skipped when pyproject.toml has not changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
extra=""
[[ "${1:-run}" == test ]] && extra="[test]"
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)-${1:-run}"
if [[ ! -f "$stamp" ]]; then
  echo "Installing the project into .venv (log: .venv/install.log)..." >&2
  if ! { .venv/bin/python -m pip install -U pip && .venv/bin/python -m pip install -e ".$extra"; } \
      > .venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    echo "Installing failed; the whole log is in .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
