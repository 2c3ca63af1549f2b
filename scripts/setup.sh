#!/bin/bash
# scanwatch setup: idempotent; run as root on Debian/Ubuntu.
#   1. installs the Debian packages that are missing (apt-get update only then)
#      (vagrant, vagrant-libvirt, shellcheck and systemd only for CI's checks of the
#      Vagrantfile, shell scripts and unit file; `systemd-analyze verify` needs no
#      running systemd, `vagrant validate` no hypervisor)
#   2. makes sure bcc finds kernel headers for the running kernel
#   3. creates .venv (from /usr/bin/python3, with system site packages, so that
#      the Debian-packaged bcc and nftables bindings are importable) and runs
#      `pip install -e .[test]` when pyproject.toml changed.
# Quiet when nothing changes; one line per change; non-zero exit on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KVER=$(uname -r)
MODDIR=/lib/modules/$KVER
VENV=$ROOT/.venv
STAMP=$VENV/.installed
SYSPY=/usr/bin/python3
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=

LOG=$(mktemp /tmp/scanwatch-setup.XXXXXX)

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    restore_policy
    if [ "$rc" -ne 0 ] && [ -s "$LOG" ]; then
        echo "setup: last lines of the log ($LOG):" >&2
        tail -n 40 "$LOG" >&2
    else
        rm -f "$LOG"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root; run: sudo bash scripts/setup.sh"
}

installed() {  # installed PKG -> 0 when dpkg says "install ok installed"
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

is_ubuntu() {
    grep -qsE '^ID=("?)ubuntu\1$' /etc/os-release
}

# A usable kernel build tree: a directory holding the kernel's top-level
# Makefile (a dangling symlink or an empty directory fails).
build_ok() {
    [ -d "$MODDIR/build" ] && [ -f "$MODDIR/build/Makefile" ]
}

# --- policy-rc.d: keep package services from starting --------------------
block_services() {
    if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
        POLICY_BACKUP=$(mktemp /tmp/scanwatch-policy-rc.d.XXXXXX)
        cp -a "$POLICY" "$POLICY_BACKUP"
    fi
    printf '#!/bin/sh\n# temporary, written by scanwatch scripts/setup.sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
    POLICY_ACTIVE=1
}

restore_policy() {
    if [ "${POLICY_ACTIVE:-0}" != 1 ]; then
        return 0
    fi
    if [ -n "$POLICY_BACKUP" ]; then
        cp -a "$POLICY_BACKUP" "$POLICY" && rm -f "$POLICY_BACKUP"
    else
        rm -f "$POLICY"
    fi
    POLICY_ACTIVE=0
}

# proc_pids NAME: pids of live (not zombie) processes whose name is NAME.
proc_pids() {
    ps -C "$1" -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'
}

stop_service() {  # stop_service SERVICE PROCESS-NAME
    local svc=$1 proc=$2 i pids
    [ -n "$(proc_pids "$proc")" ] || return 0
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl stop "$svc" >>"$LOG" 2>&1 || true
        systemctl disable "$svc" >>"$LOG" 2>&1 || true
    elif command -v service >/dev/null; then
        service "$svc" stop >>"$LOG" 2>&1 || true
    fi
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [ -n "$(proc_pids "$proc")" ] || break
        if [ "$i" = 3 ]; then
            mapfile -t pids < <(proc_pids "$proc")
            kill "${pids[@]}" >>"$LOG" 2>&1 || true
        fi
        sleep 0.5
    done
    if [ -n "$(proc_pids "$proc")" ]; then
        die "could not stop $svc (started by its package)"
    fi
    say "stopped $svc (its package started it)"
}

# --- 1. Debian packages ----------------------------------------------------
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    die "this script needs a Debian or Ubuntu system (dpkg and apt-get)"
fi

ARCH=$(dpkg --print-architecture)
PKGS=(python3-bpfcc python3-nftables python3-venv nftables bpftool nmap hping3
      iproute2 iputils-ping lsof make masscan   # masscan: bench/scan.py
      python3-systemd                              # journald structured fields
      tmux chromium                                # tests: top, report HTML
      netbase                                      # /etc/services: report names the ports
      vagrant vagrant-libvirt shellcheck systemd   # CI checks: Vagrantfile, scripts, unit
      python3-setuptools python3-wheel             # what `make install` builds with
      gcc libc6-dev                                # bcc's headers on a fresh Debian (tests/e2e)
      libatomic1)                                  # ring buffer acquire/release loads (bpfsys.py)
# make e2e's tools (tests/e2e/run.py puts every list here into the container's root too,
# so that setup finds nothing missing there and needs no network)
E2E_PKGS=(mmdebstrap systemd-container
          dpkg-dev lintian)   # make deb checks its package; dpkg-scanpackages: e2e's local archive
QUIET_PKGS=(portsentry fail2ban prometheus   # their services must not start (prometheus: scraping test)
            psad                           # bench/evasion.py (issue 13); pulls rsyslog and an MTA
            redis-server)                  # fleet tests start their own redis-server

missing=()
for p in "${PKGS[@]}" "${E2E_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
missing_quiet=()
for p in "${QUIET_PKGS[@]}"; do installed "$p" || missing_quiet+=("$p"); done

# Kernel headers: only when the running kernel has no build tree. The exact
# package for the running kernel (linux-headers-$KVER) is preferred when the
# archive has it (distro kernels); otherwise Debian's linux-headers-$ARCH
# (Ubuntu: linux-headers-generic), symlinked below.
HDR_LOOKUP=0
if ! build_ok && ! installed "linux-headers-$KVER"; then
    HDR_LOOKUP=1
fi

if [ ${#missing[@]} -gt 0 ] || [ ${#missing_quiet[@]} -gt 0 ] || [ "$HDR_LOOKUP" = 1 ]; then
    need_root "installing packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >>"$LOG" 2>&1 || die "apt-get update failed"
    if [ "$HDR_LOOKUP" = 1 ]; then
        if apt-cache show "linux-headers-$KVER" >/dev/null 2>&1; then
            hdr=linux-headers-$KVER
        elif is_ubuntu; then
            hdr=linux-headers-generic
        else
            hdr=linux-headers-$ARCH
        fi
        if ! installed "$hdr"; then
            missing+=("$hdr")
        fi
    fi
    APT=(apt-get install -y --no-install-recommends
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if [ ${#missing[@]} -gt 0 ]; then
        "${APT[@]}" "${missing[@]}" >>"$LOG" 2>&1 \
            || die "apt-get install ${missing[*]} failed"
        say "installed ${missing[*]}"
    fi
    if [ ${#missing_quiet[@]} -gt 0 ]; then
        block_services
        "${APT[@]}" "${missing_quiet[@]}" >>"$LOG" 2>&1 \
            || die "apt-get install ${missing_quiet[*]} failed"
        restore_policy
        say "installed ${missing_quiet[*]} (services not started)"
        for p in "${missing_quiet[@]}"; do
            case $p in
                portsentry) stop_service portsentry portsentry ;;
                fail2ban)   stop_service fail2ban fail2ban-server ;;
                prometheus) stop_service prometheus prometheus ;;
                psad)       stop_service psad psad ;;
                redis-server) stop_service redis-server redis-server ;;
            esac
        done
    fi
fi

# --- 2. kernel headers for bcc ----------------------------------------------
if ! build_ok; then
    need_root "linking kernel headers"
    amd=$(find /usr/src -mindepth 1 -maxdepth 1 -name "linux-headers-*-$ARCH" 2>/dev/null \
          | sort -V | tail -n 1 || true)
    if [ -z "$amd" ] || [ ! -f "$amd/Makefile" ]; then
        die "no headers for kernel $KVER and no /usr/src/linux-headers-*-$ARCH tree to fall back on"
    fi
    common=${amd%-"$ARCH"}-common
    if [ ! -d "$common" ]; then
        common=$(find /usr/src -mindepth 1 -maxdepth 1 -name 'linux-headers-*-common' 2>/dev/null \
                 | sort -V | tail -n 1 || true)
    fi
    if [ -z "$common" ] || [ ! -d "$common" ]; then
        die "no /usr/src/linux-headers-*-common tree next to $amd"
    fi
    for l in build source; do
        if [ -e "$MODDIR/$l" ] && [ ! -L "$MODDIR/$l" ]; then
            die "$MODDIR/$l exists, is not a symlink and is not a usable build tree; fix or remove it"
        fi
    done
    mkdir -p "$MODDIR"
    ln -sfn "$amd" "$MODDIR/build"
    ln -sfn "$common" "$MODDIR/source"
    build_ok || die "$MODDIR/build -> $amd is still not usable"
    say "no headers for kernel $KVER; using Debian's $(basename "$amd") (symlinked build/source)"
fi

# --- 3. virtualenv ----------------------------------------------------------
[ -x "$SYSPY" ] || die "$SYSPY is missing (install python3)"
venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -f "$VENV/pyvenv.cfg" ] \
        && grep -qiE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" \
        && grep -qE '^home *= */usr/bin$' "$VENV/pyvenv.cfg" \
        && "$VENV/bin/python" -c '' >/dev/null 2>&1
}
if ! venv_ok; then
    if [ -e "$VENV" ]; then
        rm -rf "$VENV"
        say "removed a .venv not made from $SYSPY with system site packages"
    fi
    "$SYSPY" -m venv --system-site-packages "$VENV" >>"$LOG" 2>&1 \
        || die "could not create .venv with $SYSPY -m venv (is python3-venv installed?)"
    say "created .venv from $SYSPY (--system-site-packages)"
fi

[ -f pyproject.toml ] || die "pyproject.toml missing in $ROOT"
[ -d scanwatch ] || die "scanwatch/ package directory missing in $ROOT"
# The stamp holds pyproject.toml's checksum too: an edit landing in the same
# timestamp tick as the stamp is still noticed.
sum=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ "$(cat "$STAMP")" != "$sum" ]; then
    # compat mode: a plain path in a .pth file; the default finder hook imports pathlib,
    # importlib.util and more in every start of every command (15 ms of a 30 ms start).
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[test]" \
        --config-settings editable_mode=compat >>"$LOG" 2>&1 \
        || die "pip install -e .[test] failed"
    echo "$sum" > "$STAMP"
    say "pip install -e .[test] into .venv"
fi
