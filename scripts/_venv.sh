# Sourced by the scripts in this folder: make sure .venv exists (Python 3.11+) and ades is installed in it.
# Set PYTHON to choose the interpreter that creates the venv.

_ades_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return
        fi
    done
    echo "Python 3.11+ not found: install it (e.g. apt-get install -y python3.11 python3.11-venv) or set PYTHON" >&2
    return 1
}

if [ ! -x .venv/bin/python ]; then
    python=$(_ades_python)
    echo "creating .venv with $python"
    "$python" -m venv .venv
fi
# Install (again) only when pyproject.toml changed since the last install: quicker and quieter.
stamp=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.ades-install-stamp 2>/dev/null)" != "$stamp" ] || ! .venv/bin/python -c 'import ades' 2>/dev/null; then
    echo "installing ades into .venv (pip install -e '.[dev]')"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$stamp" > .venv/.ades-install-stamp
fi
