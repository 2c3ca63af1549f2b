#!/bin/bash
# scanwatch system-wide install: `make install` / `make uninstall` (root, Debian/Ubuntu).
#
#   bash scripts/install.sh install      idempotent; one line per change, quiet otherwise
#   bash scripts/install.sh uninstall    removes everything install added (see below)
#   bash scripts/install.sh defaults DIR writes the default scanwatch.conf and
#                                        scanwatch.ignore into DIR (no root; make deb's
#                                        conffiles), from $SCANWATCH_CMD's `config show`
#
# install:
#   - installs the missing runtime Debian packages (bcc, nftables bindings, venv) and,
#     when the running kernel has no build tree, its headers package (bcc compiles the
#     XDP program against /lib/modules/$(uname -r)/build at every start); when the
#     archive has none for this kernel, the current headers package, with build/source
#     symlinked to it as scripts/setup.sh does (uninstall removes those links);
#   - a virtualenv in /opt/scanwatch (from /usr/bin/python3, --system-site-packages:
#     bcc and the nftables bindings are Debian packages), with scanwatch installed
#     non-editable from a staged copy of this tree in which bpf/ is copied to
#     scanwatch/bpf/ (package data); reinstalled only when the sources changed;
#   - /usr/local/bin/scanwatch -> /opt/scanwatch/bin/scanwatch;
#   - the `scanwatch` system group (members may run `scanwatch status`);
#   - /etc/scanwatch/scanwatch.conf (every setting of `scanwatch config show`, commented
#     out at its default) and /etc/scanwatch/scanwatch.ignore. A file the admin changed
#     is never overwritten: the new default goes next to it as FILE.dist;
#   - /var/lib/scanwatch (0700), bash and zsh completion;
#   - /usr/local/lib/systemd/system/scanwatch.service; with systemd running it is
#     enabled and started (restarted when scanwatch or the unit changed; START=no only
#     enables it). Without systemd as PID 1 (a container, a chroot) the unit is installed
#     and enabled but nothing is started, and install says so.
#
# uninstall: stops and disables the service (or a daemon started by hand), runs
# `scanwatch flush` (removes table inet scanwatch and only the hosts.deny lines
# scanwatch wrote), then removes every file above, /var/lib/scanwatch, /run/scanwatch and
# the group (when install created it). A config file the admin changed is kept, and
# uninstall says so.
set -euo pipefail
umask 022   # the venv, the command and the config must be readable by the group's admins

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PREFIX=/opt/scanwatch
VENV_PY=$PREFIX/bin/python3
SHARE=$PREFIX/share/scanwatch          # last installed copies of the conffiles, markers
STAMP=$PREFIX/.installed               # checksum of the sources installed
BIN=/usr/local/bin/scanwatch
CONFDIR=/etc/scanwatch
CONF=$CONFDIR/scanwatch.conf
IGNORE=$CONFDIR/scanwatch.ignore
STATEDIR=/var/lib/scanwatch
RUNDIR=/run/scanwatch
UNITDIR=/usr/local/lib/systemd/system
UNIT=scanwatch.service
GROUP=scanwatch
BASH_COMPL=/usr/local/share/bash-completion/completions/scanwatch
ZSH_COMPL=/usr/local/share/zsh/site-functions/_scanwatch
SYSPY=/usr/bin/python3
KVER=$(uname -r)
MODDIR=/lib/modules/$KVER
START=${START:-yes}

# Runtime packages only: test tools (nmap, hping3, ...) are scripts/setup.sh's business.
# python3-setuptools/-wheel let pip build the package without fetching a build backend.
RUNTIME_PKGS=(python3 python3-venv python3-bpfcc python3-nftables nftables python3-systemd
              python3-setuptools python3-wheel)

ACTION=${1:-install}
say() { echo "$ACTION: $*"; }
die() { echo "$ACTION: ERROR: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/scanwatch-install.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

if [ "$ACTION" != defaults ]; then
    [ "$(id -u)" -eq 0 ] || die "needs root; run: sudo make $ACTION"
fi

systemd_running() { [ -d /run/systemd/system ]; }   # sd_booted(3)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# same FILE-A FILE-B: both exist and have the same bytes
same() { [ -f "$1" ] && [ -f "$2" ] && cmp -s "$1" "$2"; }

# mkdirs DIR: mkdir -p DIR, remembering every directory it creates in
# $SHARE/created-dirs, so that uninstall removes them again (when empty)
mkdirs() {
    local d=$1 missing=()
    while [ ! -d "$d" ]; do
        missing=("$d" ${missing[@]+"${missing[@]}"})
        d=$(dirname "$d")
    done
    for d in ${missing[@]+"${missing[@]}"}; do
        mkdir -m 0755 "$d"
        echo "$d" >> "$SHARE/created-dirs"
    done
}

# put SRC DEST MODE: install SRC as DEST when missing or different; 0 = changed
put() {
    if same "$1" "$2" && [ "$(stat -c %a "$2")" = "${3#0}" ]; then
        return 1
    fi
    mkdirs "$(dirname "$2")"
    install -m "$3" "$1" "$2.scanwatch-new"
    mv -f "$2.scanwatch-new" "$2"
    return 0
}

# --- install ---------------------------------------------------------------------------

# A usable kernel build tree: bcc compiles the XDP program against it at every start.
build_ok() { [ -f "$MODDIR/build/Makefile" ]; }

install_packages() {
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        die "this script needs a Debian or Ubuntu system (dpkg and apt-get)"
    fi
    local missing=() p hdr='' arch
    for p in "${RUNTIME_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
    build_ok || hdr=linux-headers-$KVER
    # the headers metapackage follows kernel upgrades, so the next kernel has headers too
    arch=$(dpkg --print-architecture)
    if installed "linux-image-$arch" && ! installed "linux-headers-$arch"; then
        missing+=("linux-headers-$arch")
    fi
    [ ${#missing[@]} -gt 0 ] || [ -n "$hdr" ] || return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >"$TMP/apt.log" 2>&1 || { cat "$TMP/apt.log" >&2; die "apt-get update failed"; }
    if [ -n "$hdr" ] && ! apt-cache show "$hdr" >/dev/null 2>&1; then
        # Not in the archive (a kernel older than the archive's, or not Debian's): the
        # distribution's current headers, symlinked below, as scripts/setup.sh does.
        # For an XDP program (no kprobes) headers of another build of the series do.
        hdr=linux-headers-$arch
        if grep -qsE '^ID=("?)ubuntu\1$' /etc/os-release; then
            hdr=linux-headers-generic
        fi
    fi
    if [ -n "$hdr" ] && ! installed "$hdr" && [[ " ${missing[*]} " != *" $hdr "* ]]; then
        missing+=("$hdr")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get install -y --no-install-recommends "${missing[@]}" >"$TMP/apt.log" 2>&1 \
            || { tail -n 30 "$TMP/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
        say "installed ${missing[*]}"
    fi
    build_ok || link_headers
}

# /lib/modules/$KVER/{build,source} -> the newest /usr/src/linux-headers-* trees,
# recorded so that uninstall removes exactly these links.
link_headers() {
    local arch tree common l
    arch=$(dpkg --print-architecture)
    tree=$(find /usr/src -mindepth 1 -maxdepth 1 \( -name "linux-headers-*-$arch" \
           -o -name 'linux-headers-*-generic' \) 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$tree" ] || [ ! -f "$tree/Makefile" ]; then
        say "warning: no kernel headers for $KVER: scanwatch cannot compile its XDP program" \
            "until $MODDIR/build holds them"
        return 0
    fi
    common=$(find /usr/src -mindepth 1 -maxdepth 1 -name 'linux-headers-*-common' 2>/dev/null \
             | sort -V | tail -n 1 || true)
    for l in build source; do
        if [ -e "$MODDIR/$l" ] && [ ! -L "$MODDIR/$l" ]; then
            die "$MODDIR/$l exists, is not a symlink and is not a usable build tree"
        fi
    done
    mkdir -p "$MODDIR" "$TMP/share"
    ln -sfn "$tree" "$MODDIR/build"
    echo "$MODDIR/build" > "$TMP/share/linked-headers"
    if [ -n "$common" ]; then
        ln -sfn "$common" "$MODDIR/source"
        echo "$MODDIR/source" >> "$TMP/share/linked-headers"
    fi
    say "no headers package for kernel $KVER; linked $MODDIR/build to $(basename "$tree")"
}

# The tree pip builds: the package, with bpf/ inside it as package data.
stage_sources() {
    local s=$TMP/src
    mkdir -p "$s"
    cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$s/"
    tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - scanwatch | tar -C "$s" -xf -
    if [ ! -d "$s/scanwatch/bpf" ]; then   # bpf/ at the top: it goes inside the package
        mkdir "$s/scanwatch/bpf"
        cp "$ROOT"/bpf/*.c "$ROOT"/bpf/*.h "$s/scanwatch/bpf/"
    fi
    (cd "$s" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

venv_ok() {
    [ -x "$VENV_PY" ] && [ -f "$PREFIX/pyvenv.cfg" ] \
        && grep -qiE '^include-system-site-packages *= *true' "$PREFIX/pyvenv.cfg" \
        && "$VENV_PY" -c 'import bcc, nftables' >/dev/null 2>&1
}

install_venv() {
    local sum
    sum=$(stage_sources)
    if ! venv_ok; then
        if [ -e "$PREFIX" ]; then
            rm -rf "$PREFIX"
            say "removed an unusable $PREFIX"
        fi
        "$SYSPY" -m venv --system-site-packages "$PREFIX" >"$TMP/venv.log" 2>&1 \
            || { cat "$TMP/venv.log" >&2; die "$SYSPY -m venv $PREFIX failed"; }
        say "created the virtualenv $PREFIX (from $SYSPY, --system-site-packages)"
    fi
    mkdir -p "$SHARE"
    if [ -f "$TMP/share/linked-headers" ]; then
        cat "$TMP/share/linked-headers" >> "$SHARE/linked-headers"
    fi
    if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$sum" ]; then
        # --force-reinstall --no-deps: the same version number with other sources must
        # still replace the installed files; dependencies are installed (once) first.
        local pip=("$VENV_PY" -m pip install --disable-pip-version-check -q --no-build-isolation)
        if ! "${pip[@]}" "$TMP/src" >"$TMP/pip.log" 2>&1 \
                || ! "${pip[@]}" --force-reinstall --no-deps "$TMP/src" >>"$TMP/pip.log" 2>&1; then
            tail -n 30 "$TMP/pip.log" >&2
            die "pip install into $PREFIX failed"
        fi
        install -D -m 0644 "$ROOT/README.md" "$PREFIX/share/doc/scanwatch/README.md"
        echo "$sum" > "$STAMP"
        CHANGED=1
        say "installed scanwatch $("$PREFIX/bin/scanwatch" --version | awk '{print $NF}') into $PREFIX"
    fi
    # The daemon compiles bpf/sentry.bpf.c at each start: it must be where the package
    # looks for it (scanwatch/sentry/kernel/contract.py PROGRAM).
    # -I: the installed package, not a scanwatch/ in the current directory
    "$VENV_PY" -I - <<'EOF' || die "the installed package does not find its BPF program (scanwatch/sentry/kernel/contract.py must look in scanwatch/bpf/, where install puts it)"
import sys
from scanwatch.sentry.kernel import contract as K
sys.exit(0 if K.PROGRAM.is_file() and K.HEADER.is_file() else 1)
EOF
}

install_command() {
    if [ -e "$BIN" ] && [ ! -L "$BIN" ]; then
        die "$BIN exists and is not a symlink; remove it or move it away first"
    fi
    if [ "$(readlink "$BIN" 2>/dev/null)" != "$PREFIX/bin/scanwatch" ]; then
        mkdirs "$(dirname "$BIN")"
        ln -sfn "$PREFIX/bin/scanwatch" "$BIN"
        say "linked $BIN -> $PREFIX/bin/scanwatch"
    fi
}

install_group() {
    mkdir -p "$SHARE"
    if ! getent group "$GROUP" >/dev/null; then
        groupadd --system "$GROUP"
        touch "$SHARE/group-created"
        say "created the system group $GROUP (its members may run \`scanwatch status\`)"
    fi
}

install_dirs() {
    if [ ! -d "$CONFDIR" ]; then
        install -d -m 0755 "$CONFDIR"
        say "created $CONFDIR"
    fi
    if [ ! -d "$STATEDIR" ]; then
        install -d -m 0700 "$STATEDIR"
        say "created $STATEDIR"
    fi
}

# The default config: `scanwatch config show`, every setting commented out at its default,
# so that an unchanged file follows the defaults of the installed version.
make_conf() {
    local show group_line=
    show=$("${SCANWATCH_CMD:-$PREFIX/bin/scanwatch}" config show) || die "scanwatch config show failed"
    # The status socket is group-readable only for CONTROL_GROUP; the unit's
    # SupplementaryGroups= lets the daemon hand the socket to this group.
    if grep -q '^CONTROL_GROUP=' <<<"$show" && ! grep -qx "CONTROL_GROUP=\"$GROUP\"" <<<"$show"; then
        group_line="CONTROL_GROUP=\"$GROUP\""
    fi
    cat <<EOF
# $CONF: scanwatch's configuration (portsentry.conf syntax: KEY="value").
#
# Written from \`scanwatch config show\` (by \`make install\`, or in the .deb): every setting
# is listed at its default, commented out. To change one, uncomment its line and edit it.
#   scanwatch config check -c $CONF   validate it and the ignore file
#   systemctl reload scanwatch       SIGHUP: re-read (see README, Configuration)
#   systemctl restart scanwatch      restart with the new settings
# An upgrade never overwrites this file once you have changed it (\`make install\` writes
# a newer default next to it as scanwatch.conf.dist; dpkg asks). \`make uninstall\` and
# \`apt remove\` keep it; \`apt purge\` removes it.
EOF
    if [ -n "$group_line" ]; then
        printf '\n# Members of this group may run "scanwatch status" (the socket is root:%s 0660).\n%s\n' \
            "$GROUP" "$group_line"
    fi
    awk '/^#/ { print ""; print; next }
         /^[A-Z_][A-Z0-9_]*=/ { print "#" $0; next }
         { print }' <<<"$show"
}

make_ignore() {
    cat <<'EOF'
# /etc/scanwatch/scanwatch.ignore: addresses scanwatch never counts or blocks.
# One IPv4 or IPv6 address or CIDR a line (PortSentry's syntax); # starts a comment.
# Loopback and this machine's own addresses are always ignored; add your management
# hosts and monitoring here. `systemctl reload scanwatch` (SIGHUP) re-reads this file.
#
# 192.0.2.10
# 198.51.100.0/24
# 2001:db8::/32
EOF
}

# conffile NEW DEST: install NEW as DEST unless the admin changed DEST.
# $SHARE/NAME.installed is the copy last installed as DEST: DEST equal to it (or to
# NEW) is pristine and follows NEW; anything else is the admin's and is kept, with NEW
# written as DEST.dist when it differs from the default the admin started from.
conffile() {
    local new=$1 dest=$2 name last
    name=$(basename "$dest")
    last=$SHARE/$name.installed
    mkdir -p "$SHARE"
    if [ ! -e "$dest" ]; then
        install -m 0644 "$new" "$dest"
        cp "$new" "$last"
        say "installed $dest"
    elif same "$dest" "$new" || same "$dest" "$last"; then
        if ! same "$dest" "$new"; then
            install -m 0644 "$new" "$dest.scanwatch-new"
            mv -f "$dest.scanwatch-new" "$dest"
            say "updated $dest (you had not changed it)"
        fi
        same "$last" "$new" || cp "$new" "$last"
        if [ -e "$dest.dist" ]; then
            rm -f "$dest.dist"
            say "removed $dest.dist ($dest is the default again)"
        fi
    elif ! same "$last" "$new"; then
        # changed by the admin, and the default changed since it was installed
        if ! same "$dest.dist" "$new"; then
            install -m 0644 "$new" "$dest.dist"
            say "kept $dest (you changed it); the new default is $dest.dist"
        fi
    fi
}

install_conffiles() {
    make_conf > "$TMP/scanwatch.conf"
    "$PREFIX/bin/scanwatch" config check -c "$TMP/scanwatch.conf" >/dev/null \
        || die "the generated default config does not pass \`scanwatch config check\`"
    conffile "$TMP/scanwatch.conf" "$CONF"
    make_ignore > "$TMP/scanwatch.ignore"
    conffile "$TMP/scanwatch.ignore" "$IGNORE"
}

install_completion() {
    local shell file
    for shell in bash zsh; do
        file=$BASH_COMPL
        [ "$shell" = zsh ] && file=$ZSH_COMPL
        # click's completion protocol: the script calls scanwatch back for completions
        if _SCANWATCH_COMPLETE=${shell}_source "$PREFIX/bin/scanwatch" > "$TMP/compl" 2>/dev/null \
                && [ -s "$TMP/compl" ]; then
            if put "$TMP/compl" "$file" 0644; then
                say "installed $shell completion $file"
            fi
        fi
    done
}

install_unit() {
    local unit_changed=0 state
    if put "$ROOT/packaging/$UNIT" "$UNITDIR/$UNIT" 0644; then
        unit_changed=1
        say "installed $UNITDIR/$UNIT"
    fi
    if ! command -v systemctl >/dev/null; then
        say "no systemctl here: the unit is installed but not enabled or started;" \
            "run \`scanwatch run -c $CONF\` yourself"
        return 0
    fi
    if ! systemd_running; then
        if ! systemctl --quiet is-enabled "$UNIT" 2>/dev/null; then
            systemctl enable "$UNIT" >"$TMP/systemctl.log" 2>&1 \
                || { cat "$TMP/systemctl.log" >&2; die "systemctl enable $UNIT failed"; }
            say "enabled $UNIT"
        fi
        say "systemd is not running here (PID 1 is $(ps -p 1 -o comm= 2>/dev/null || echo '?')):" \
            "the unit is installed and enabled but not started;" \
            "start the daemon yourself: scanwatch run -c $CONF"
        return 0
    fi
    if [ "$unit_changed" = 1 ]; then
        systemctl daemon-reload
    fi
    if ! systemctl --quiet is-enabled "$UNIT" 2>/dev/null; then
        systemctl --quiet enable "$UNIT"
        say "enabled $UNIT"
    fi
    if [ "$START" = no ]; then
        systemctl --quiet is-active "$UNIT" || say "not started (START=no): systemctl start $UNIT"
        return 0
    fi
    if systemctl --quiet is-active "$UNIT"; then
        if [ "$unit_changed" = 1 ] || [ "$CHANGED" = 1 ]; then
            systemctl restart "$UNIT" || die "systemctl restart $UNIT failed; see: journalctl -u $UNIT"
            say "restarted $UNIT"
        fi
    else
        systemctl start "$UNIT" || die "systemctl start $UNIT failed; see: journalctl -u $UNIT"
        say "started $UNIT"
    fi
    state=$(systemctl is-active "$UNIT" || true)
    [ "$state" = active ] || die "$UNIT is $state after start; see: journalctl -u $UNIT"
}

do_install() {
    CHANGED=0
    [ -f "$ROOT/packaging/$UNIT" ] || die "packaging/$UNIT missing in $ROOT"
    install_packages
    install_venv
    install_command
    install_group
    install_dirs
    install_conffiles
    install_completion
    install_unit
}

# --- uninstall -------------------------------------------------------------------------

# stop_daemon PID: SIGTERM, wait up to 20 s (the daemon detaches XDP and exits)
stop_daemon() {
    local pid=$1 _
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    die "the scanwatch daemon (pid $pid) did not exit after SIGTERM"
}

uninstall_service() {
    local pid conf=()
    if command -v systemctl >/dev/null; then
        if systemd_running; then
            if systemctl --quiet is-active "$UNIT" 2>/dev/null; then
                systemctl stop "$UNIT"
                say "stopped $UNIT"
            fi
        fi
        if systemctl --quiet is-enabled "$UNIT" 2>/dev/null; then
            systemctl --quiet disable "$UNIT" 2>/dev/null || true
            say "disabled $UNIT"
        fi
    fi
    # A daemon started by hand (no systemd, or outside the unit) on the default RUN_DIR.
    if [ -x "$PREFIX/bin/scanwatch" ]; then
        [ -f "$CONF" ] && conf=(-c "$CONF")
        pid=$("$PREFIX/bin/scanwatch" status --json "${conf[@]}" 2>/dev/null \
              | "$SYSPY" -c 'import json,sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null || true)
        if [ -n "$pid" ]; then
            stop_daemon "$pid"
            say "stopped the scanwatch daemon (pid $pid)"
        fi
    fi
}

# Lift every block: table inet scanwatch and the hosts.deny lines scanwatch wrote.
uninstall_blocks() {
    local out
    if [ -x "$PREFIX/bin/scanwatch" ]; then
        if [ -f "$CONF" ] && "$PREFIX/bin/scanwatch" config check -c "$CONF" >/dev/null 2>&1; then
            out=$("$PREFIX/bin/scanwatch" flush -c "$CONF") || die "scanwatch flush -c $CONF failed"
        else
            out=$("$PREFIX/bin/scanwatch" flush) || die "scanwatch flush failed"
        fi
        say "scanwatch flush: $out"
    elif command -v nft >/dev/null && nft list table inet scanwatch >/dev/null 2>&1; then
        nft delete table inet scanwatch
        say "removed table inet scanwatch (no $PREFIX to run scanwatch flush: hosts.deny" \
            "lines scanwatch wrote, if any, are left)"
    fi
}

# remove_conffile DEST: remove DEST when it is what install put there; else keep it
remove_conffile() {
    local dest=$1 last
    last=$SHARE/$(basename "$dest").installed
    if [ -e "$dest.dist" ]; then
        rm -f "$dest.dist"
        say "removed $dest.dist"
    fi
    [ -e "$dest" ] || return 0
    if same "$dest" "$last"; then
        rm -f "$dest"
        say "removed $dest"
    else
        say "kept $dest: you changed it (remove it yourself if you no longer want it)"
    fi
}

# /etc/hosts.deny that the daemon created on a machine without one (no tcp-wrappers):
# empty once flushed and no package's file. An empty hosts.deny denies nothing either way.
remove_empty_hosts_deny() {
    local f=/etc/hosts.deny
    if [ -f "$f" ] && [ ! -s "$f" ] && ! dpkg -S "$f" >/dev/null 2>&1; then
        rm -f "$f"
        say "removed the empty $f (no package owns it)"
    fi
}

do_uninstall() {
    local f
    uninstall_service
    uninstall_blocks
    remove_empty_hosts_deny
    for f in "$BASH_COMPL" "$ZSH_COMPL" "$UNITDIR/$UNIT"; do
        if [ -e "$f" ]; then
            rm -f "$f"
            say "removed $f"
        fi
    done
    if systemd_running && command -v systemctl >/dev/null; then
        systemctl daemon-reload
        systemctl reset-failed "$UNIT" >/dev/null 2>&1 || true
    fi
    if [ -L "$BIN" ] && [ "$(readlink "$BIN")" = "$PREFIX/bin/scanwatch" ]; then
        rm -f "$BIN"
        say "removed $BIN"
    fi
    remove_conffile "$CONF"
    remove_conffile "$IGNORE"
    if [ -d "$CONFDIR" ] && rmdir "$CONFDIR" 2>/dev/null; then
        say "removed $CONFDIR"
    fi
    for f in "$STATEDIR" "$RUNDIR"; do
        if [ -e "$f" ]; then
            rm -rf "$f"
            say "removed $f"
        fi
    done
    if [ -f "$SHARE/group-created" ] && getent group "$GROUP" >/dev/null; then
        groupdel "$GROUP"
        say "removed the group $GROUP"
    fi
    if [ -f "$SHARE/linked-headers" ]; then
        while read -r f; do
            if [ -L "$f" ]; then
                rm -f "$f"
                say "removed $f (linked by install)"
            fi
        done < "$SHARE/linked-headers"
    fi
    if [ -f "$SHARE/created-dirs" ]; then
        # deepest first; a directory something else put files in stays
        while read -r f; do
            if rmdir "$f" 2>/dev/null; then
                say "removed $f"
            fi
        done < <(tac "$SHARE/created-dirs")
    fi
    if [ -e "$PREFIX" ]; then
        rm -rf "$PREFIX"
        say "removed $PREFIX"
    fi
}

case $ACTION in
    install) do_install ;;
    uninstall) do_uninstall ;;
    defaults)
        [ -d "${2:-}" ] || die "usage: $0 defaults DIR"
        make_conf > "$2/scanwatch.conf"
        make_ignore > "$2/scanwatch.ignore" ;;
    *) die "usage: $0 install|uninstall|defaults DIR" ;;
esac
