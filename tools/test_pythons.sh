#!/usr/bin/env bash
# `make test-pythons`: run the given test files on every Python >= 3.11 pyenv has (else the
# python3.N on PATH), each in its own venv (.venv-pythons/3.N, helixlab[test] installed
# editable, reinstalled when pyproject.toml changes). One summary line per Python; exits 1
# if any failed.
#   tools/test_pythons.sh tests/kernel/test_kernel.py tests/gateway/test_transport.py
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf 'helixlab test-pythons: %s\n' "$*" >&2; }

pythons=()
if command -v pyenv >/dev/null; then
    root=$(pyenv root)
    for version in $(pyenv versions --bare --skip-aliases 2>/dev/null | sort -V); do
        [[ -x $root/versions/$version/bin/python ]] && pythons+=("$root/versions/$version/bin/python")
    done
fi
if (( ! ${#pythons[@]} )); then
    for minor in 11 12 13 14; do
        command -v "python3.$minor" >/dev/null && pythons+=("$(command -v "python3.$minor")")
    done
fi

summary=()
failed=0
for python in "${pythons[@]}"; do
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
    version=$("$python" -c 'import platform; print(platform.python_version())')
    venv=.venv-pythons/$version
    if [[ ! -x $venv/bin/python ]]; then
        "$python" -m venv "$venv" || { summary+=("$version: no venv"); failed=1; continue; }
    fi
    if [[ ! -f $venv/.helixlab-test || pyproject.toml -nt $venv/.helixlab-test ]]; then
        say "Python $version: installing helixlab[test] into $venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip &&
            "$venv/bin/python" -m pip install --quiet -e '.[test]' &&
            touch "$venv/.helixlab-test" ||
            { summary+=("$version: install failed"); failed=1; continue; }
    fi
    say "Python $version: pytest $*"
    log=$(mktemp)
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
    code=${PIPESTATUS[0]}
    summary+=("$version: $(grep -E ' in [0-9.]+s' "$log" | tail -1 | tr -d '=' | xargs)")
    rm -f "$log"
    (( code )) && failed=1
done
if (( ! ${#summary[@]} )); then
    say "no Python >= 3.11 found"
    exit 1
fi
for line in "${summary[@]}"; do say "$line"; done
exit $failed
