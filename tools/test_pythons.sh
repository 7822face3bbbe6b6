#!/usr/bin/env bash
# `make test-pythons`: run the given test files on every Python >= 3.11 pyenv has (else the
# python3.N on PATH), each in its own venv (.venv-pythons/3.N, helixlab[test] installed
# editable, reinstalled when pyproject.toml changes). One summary line per Python; exits 1
# if any failed.
#   tools/test_pythons.sh tests/kernel/test_kernel.py tests/gateway/test_transport.py
# With --newest (what `make test` runs after the whole suite on .venv's Python): only the
# newest Python found, when it is newer than .venv's, with the few packages those files need
# (the package, IPython and ipywidgets for the cells, openai, pytest); no newer one: one line.
set -uo pipefail
cd "$(dirname "$0")/.."

newest=0
if [[ ${1:-} == --newest ]]; then
    newest=1
    shift
fi

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

if (( newest )); then
    main=$(.venv/bin/python -c 'import sys; print(sys.version_info[:2])' 2>/dev/null)
    last=${pythons[${#pythons[@]}-1]:-}
    if [[ -z $last || $("$last" -c 'import sys; print(sys.version_info[:2])') == "$main" ]]; then
        say "no Python newer than .venv's on this machine: the suite above ran on the newest"
        exit 0
    fi
    pythons=("$last")
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
    if (( newest )); then
        stamp=$venv/.helixlab-newest
        packages=(-e . 'ipython>=8.12' 'ipywidgets>=8.1' 'openai>=1.30' 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100')
    else
        stamp=$venv/.helixlab-test
        packages=(-e '.[test]')
    fi
    if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
        say "Python $version: installing ${packages[*]} into $venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip &&
            "$venv/bin/python" -m pip install --quiet "${packages[@]}" &&
            touch "$stamp" ||
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
