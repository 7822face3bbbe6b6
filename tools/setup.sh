#!/usr/bin/env bash
# Install what helixlab needs, idempotently: the graphviz `dot` binary, redis-server,
# bubblewrap (and, with --browser, Debian's Chromium for the browser test) from apt when
# missing and we are root, then a local .venv with helixlab and one extra: `tools/setup.sh
# lab` (the course, what `make lab` runs; nothing said about tests), `tools/setup.sh test
# --browser` (everything, what `make test` runs; test is the default), fleet, grade. Safe
# to run again (it only does what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

browser=0
extra=test
for arg in "$@"; do
    case $arg in
        --browser) browser=1 ;;
        lab | --lab) extra=lab ;;
        fleet | grade | test) extra=$arg ;;
        *)
            printf 'usage: tools/setup.sh [lab|fleet|grade|test] [--browser]\n' >&2
            exit 2
            ;;
    esac
done
lab=0  # `make lab`: a learner's install, nothing said about tests
[[ $extra == lab ]] && lab=1

say() { printf 'helixlab setup: %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        return 1
    fi
    # another apt (unattended-upgrades, a second shell) may hold the lock: wait for it
    local wait=(-o DPkg::Lock::Timeout=300)
    say "apt-get install $* (if another apt is running, this waits up to 5 minutes for it)"
    if (( ! apt_updated )); then
        apt-get "${wait[@]}" update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get "${wait[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

# -- system packages ------------------------------------------------------------------
missing=()
command -v dot >/dev/null || missing+=(graphviz)
# a fleet (serve --workers N) starts a private redis-server when no --redis is given
command -v redis-server >/dev/null || [[ -x /usr/bin/redis-server ]] || missing+=(redis-server)
# `helixlab grade --sandbox auto|on` runs each submission's kernel under bubblewrap
command -v bwrap >/dev/null || missing+=(bubblewrap)
if (( browser )) && [[ ! -x /usr/bin/chromium ]]; then
    missing+=(chromium)
fi
if (( ${#missing[@]} )); then
    if ! apt_install "${missing[@]}"; then
        say "missing system packages: ${missing[*]}."
        sudo=$([[ $(id -u) -ne 0 ]] && echo "sudo " || true)
        say "install them with '${sudo}apt-get install ${missing[*]}' (or use 'conda env create -f environment.yml')."
        if (( lab )); then
            say "until then graph views fall back to text and 'helixlab serve --workers N' needs --redis URL."
        else
            say "until then graph views fall back to text, the browser test is skipped,"
            say "'helixlab serve --workers N' needs --redis URL (the fleet tests are skipped) and"
            say "'helixlab grade' runs submissions without a sandbox (--sandbox on refuses to start)."
        fi
    fi
fi

# -- Python >= 3.11 and a venv -----------------------------------------------------------
python=""
for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [[ -z "$python" ]]; then
    say "helixlab needs Python 3.11 or newer; none was found on PATH (set PYTHON=/path/to/python3.11)."
    exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${version}-venv" || apt_install python3-venv || {
            say "'$python -m venv' failed: install the venv module ('sudo apt-get install python3-venv')."
            exit 1
        }
        "$python" -m venv .venv
    fi
fi

# one stamp per extra; [test] includes every other extra
installed() { [[ -f .venv/.helixlab-$1 && ! pyproject.toml -nt .venv/.helixlab-$1 ]]; }
if ! installed "$extra" && ! installed test; then
    say "installing helixlab[$extra] into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extra]"
    touch ".venv/.helixlab-$extra"
fi
