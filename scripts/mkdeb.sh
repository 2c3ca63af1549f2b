#!/bin/bash
# `make deb`: scanwatch_<version>_all.deb, installed as Debian admins install a security
# tool (apt install ./scanwatch_<version>_all.deb), with Debian's own Python packages
# instead of a virtualenv. Plain dpkg-deb (no debhelper: nothing is compiled, the BPF C
# is built by bcc on the target at each start), run as any user (--root-owner-group).
#
#   bash scripts/mkdeb.sh [OUTDIR]     default OUTDIR: the repository's top directory
#
# The package holds:
#   /usr/lib/python3/dist-packages/scanwatch (+ .dist-info)  the wheel's files, bpf/ inside
#   /usr/bin/scanwatch                       entry point (as pip writes one)
#   /lib/systemd/system/scanwatch.service    packaging/scanwatch.service with /usr/bin
#   /etc/scanwatch/scanwatch.{conf,ignore}   conffiles (scripts/install.sh defaults)
#   bash and zsh completion, README, copyright, changelog
# Maintainer scripts: postinst makes the scanwatch group, byte-compiles, enables and
# starts the unit; prerm (remove) stops it and lifts every block (`scanwatch flush`);
# postrm purge removes the group, /var/lib/scanwatch and the unit's enablement state.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT}
PY=${PYTHON:-$ROOT/.venv/bin/python}
die() { echo "deb: ERROR: $*" >&2; exit 1; }
[ -x "$PY" ] || die "no $PY: run 'make setup' first (it builds the wheel and the defaults)"
command -v dpkg-deb >/dev/null || die "dpkg-deb missing (a Debian system is needed)"

VERSION=$("$PY" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' \
          "$ROOT/pyproject.toml")
PKG=scanwatch
DEB=$OUT/${PKG}_${VERSION}_all.deb
# Debian package names for pyproject.toml's dependencies (tests/unit/test_deb.py checks
# that every one has its entry). Debian 12's versions: click 8.1, pyroute2 0.7.2,
# psutil 5.9.4, prometheus-client 0.16, rich 13.3, matplotlib 3.6.
# (deb-systemd-helper's init-system-helpers is essential in Debian 12: not listed)
DEPENDS="python3 (>= 3.11), python3-bpfcc, python3-nftables, nftables, python3-systemd"
DEPENDS+=", python3-click (>= 8), python3-pyroute2 (>= 0.7), python3-psutil (>= 5.9)"
DEPENDS+=", python3-prometheus-client (>= 0.16), python3-rich (>= 13), passwd"
# matplotlib draws only `scanwatch report`'s charts, and brings ~60 MB: recommended.
# bcc compiles against the running kernel's headers; Debian's metapackage per
# architecture (an arch-all package names the ones it knows).
# redis-py only for the fleet (FLEET_URL): a single host needs none. Debian 12 has 4.3.4,
# pyproject's lower bound: the fleet's unit and system tests pass with it (a Redis Cluster
# then needs +info in the ACL line; README).
RECOMMENDS="python3-matplotlib (>= 3.6), python3-redis, linux-headers-amd64 | linux-headers-arm64 | linux-headers-generic"

B=$(mktemp -d "${TMPDIR:-/tmp}/scanwatch-deb.XXXXXX")
trap 'rm -rf "$B"' EXIT
R=$B/root
SITE=$R/usr/lib/python3/dist-packages

# 1. the wheel, from a staged copy with bpf/ inside the package (as make install builds)
mkdir -p "$B/src" "$B/wheel"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$B/src/"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - scanwatch | tar -C "$B/src" -xf -
mkdir -p "$B/src/scanwatch/bpf"
cp "$ROOT"/bpf/*.c "$ROOT"/bpf/*.h "$B/src/scanwatch/bpf/"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$B/wheel" "$B/src" >"$B/pip.log" 2>&1 || { tail -n 20 "$B/pip.log" >&2; die "pip wheel failed"; }
mkdir -p "$SITE"
"$PY" -m zipfile -e "$B"/wheel/*.whl "$SITE"
# entry_points.txt stays (importlib.metadata); INSTALLER/RECORD describe a pip install
rm -f "$SITE"/*.dist-info/RECORD "$SITE"/*.dist-info/INSTALLER
find "$SITE" -name '*.py' -exec chmod 0644 {} +

# 2. the command
install -d "$R/usr/bin"
cat > "$R/usr/bin/scanwatch" <<'EOF'
#!/usr/bin/python3
import sys

from scanwatch.launch import main

sys.exit(main())
EOF
chmod 0755 "$R/usr/bin/scanwatch"

# 3. the unit: the packaged command, documentation and wording
install -d "$R/lib/systemd/system"
# shellcheck disable=SC2016  # the backquotes are the unit's own text, not expansions
sed -e 's|/usr/local/bin/scanwatch|/usr/bin/scanwatch|g' \
    -e 's|file:///opt/scanwatch/share/doc/scanwatch/README.md|file:///usr/share/doc/scanwatch/README.md|' \
    -e '1,4{s|Installed by `make install`|Installed by the scanwatch .deb|;s|(scripts/install.sh) as /usr/local/lib/systemd/system/scanwatch.service.|as /lib/systemd/system/scanwatch.service.|;s|`make install` replaces this file.|an upgrade replaces this file.|}' \
    "$ROOT/packaging/scanwatch.service" > "$R/lib/systemd/system/scanwatch.service"
grep -q '^ExecStart=/usr/bin/scanwatch ' "$R/lib/systemd/system/scanwatch.service" \
    || die "packaging/scanwatch.service: ExecStart= no longer names /usr/local/bin/scanwatch"

# 4. conffiles and completion, made by the tree's own scanwatch
install -d "$R/etc/scanwatch"
SCANWATCH_CMD=$ROOT/.venv/bin/scanwatch bash "$ROOT/scripts/install.sh" defaults "$R/etc/scanwatch"
chmod 0644 "$R"/etc/scanwatch/*
install -d "$R/usr/share/bash-completion/completions" "$R/usr/share/zsh/vendor-completions"
_SCANWATCH_COMPLETE=bash_source "$ROOT/.venv/bin/scanwatch" > "$R/usr/share/bash-completion/completions/scanwatch"
_SCANWATCH_COMPLETE=zsh_source "$ROOT/.venv/bin/scanwatch" > "$R/usr/share/zsh/vendor-completions/_scanwatch"

# a manual page: the top-level help, each command's help after it (`scanwatch help`)
install -d "$R/usr/share/man/man1"
{
    printf '.TH SCANWATCH 1 "%s" "scanwatch %s" "User Commands"\n' "$(date -u +%Y-%m-%d)" "$VERSION"
    printf '.SH NAME\nscanwatch \\- kernel-assisted port-scan detector (eBPF XDP + nftables)\n'
    printf '.SH DESCRIPTION\n.nf\n'
    { "$ROOT/.venv/bin/scanwatch" --help
      for c in run status flush unblock config top report scan lsof; do
          printf '\nscanwatch %s\n' "$c"; "$ROOT/.venv/bin/scanwatch" "$c" -h | sed 1d
      done; } | sed -e 's/\\/\\e/g' -e 's/^[.'"'"']/\\\&&/'
    printf '.fi\n.SH FILES\n/etc/scanwatch/scanwatch.conf, /etc/scanwatch/scanwatch.ignore,\n'
    printf '/var/lib/scanwatch, /run/scanwatch/scanwatch.sock\n'
    printf '.SH SEE ALSO\n/usr/share/doc/scanwatch/README.md\n'
} | gzip -9n > "$R/usr/share/man/man1/scanwatch.1.gz"
chmod 0644 "$R/usr/share/man/man1/scanwatch.1.gz"

# 5. documentation Debian requires
DOC=$R/usr/share/doc/$PKG
install -d "$DOC"
install -m 0644 "$ROOT/README.md" "$DOC/README.md"
cat > "$DOC/copyright" <<'EOF'
scanwatch: a kernel-assisted port-scan detector (eBPF XDP + nftables)

Copyright 2026 the scanwatch maintainers

The authors have not yet chosen a licence for scanwatch; until they do, no licence is
granted beyond what is needed to install and run this package.
EOF
# a native package's changelog: this version's entry, from the last commit
DATE=$(git -C "$ROOT" log -1 --format=%aD 2>/dev/null || date -R)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '%s (%s) unstable; urgency=medium\n\n  * Built from commit %s (make deb).\n\n -- %s  %s\n' \
    "$PKG" "$VERSION" "$COMMIT" "scanwatch maintainers <maintainers@users.noreply.r-seed-fe3839a5.example>" \
    "$DATE" | gzip -9n > "$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# 6. control and maintainer scripts
install -d "$R/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
cat > "$R/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: all
Maintainer: scanwatch maintainers <maintainers@users.noreply.r-seed-fe3839a5.example>
Installed-Size: $SIZE
Depends: $DEPENDS
Recommends: $RECOMMENDS
Section: net
Priority: optional
Description: kernel-assisted port-scan detector (eBPF XDP + nftables)
 scanwatch rebuilds PortSentry: an XDP program counts probes per source in the
 kernel (SYN, FIN, NULL, XMAS, UDP and the other nmap scan types), and a daemon
 blocks the scanners it reports in an nftables set and in /etc/hosts.deny,
 writing PortSentry's attackalert lines. It also has "scanwatch scan" (an
 nmap-like scanner), "scanwatch lsof", "scanwatch top" and "scanwatch report".
 .
 The daemon compiles its BPF program with bcc at each start, against the
 running kernel's headers (/lib/modules/\$(uname -r)/build).
EOF
printf '/etc/scanwatch/scanwatch.conf\n/etc/scanwatch/scanwatch.ignore\n' > "$R/DEBIAN/conffiles"

cat > "$R/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# scanwatch postinst: the group, byte-code, the unit enabled and (re)started
set -e
if [ "$1" = configure ]; then
    # members of this group may run `scanwatch status` (CONTROL_GROUP)
    if ! getent group scanwatch >/dev/null; then
        groupadd --system scanwatch
    fi
    if command -v py3compile >/dev/null 2>&1; then
        py3compile -p scanwatch
    fi
    # enabled on first install; an admin's `systemctl disable` survives upgrades
    deb-systemd-helper unmask scanwatch.service >/dev/null || true
    if deb-systemd-helper --quiet was-enabled scanwatch.service; then
        deb-systemd-helper enable scanwatch.service >/dev/null || true
    else
        deb-systemd-helper update-state scanwatch.service >/dev/null || true
    fi
    if [ -z "$2" ]; then
        deb-systemd-helper enable scanwatch.service >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # a failed start (say, no kernel headers yet) must not leave the package
        # unconfigured: the admin reads the journal and starts it again
        if [ -n "$2" ]; then
            deb-systemd-invoke try-restart scanwatch.service >/dev/null \
                || echo "scanwatch: restart failed; see journalctl -u scanwatch" >&2
        else
            deb-systemd-invoke start scanwatch.service >/dev/null \
                || echo "scanwatch: start failed; see journalctl -u scanwatch" >&2
        fi
    fi
fi
exit 0
EOF

cat > "$R/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# scanwatch prerm: on removal, stop the daemon and lift every block it made (table inet
# scanwatch, its hosts.deny lines): nothing would maintain or expire them afterwards.
# An upgrade keeps both (postinst restarts the daemon, which restores its blocks).
set -e
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop scanwatch.service >/dev/null || true
    fi
    conf=
    if [ -f /etc/scanwatch/scanwatch.conf ] \
            && scanwatch config check -c /etc/scanwatch/scanwatch.conf >/dev/null 2>&1; then
        conf="-c /etc/scanwatch/scanwatch.conf"
    fi
    # shellcheck disable=SC2086
    scanwatch flush $conf || echo "scanwatch: flush failed; remove table inet scanwatch yourself" >&2
    # a hosts.deny the daemon created on a machine without one: empty now, no package's
    if [ -f /etc/hosts.deny ] && [ ! -s /etc/hosts.deny ] && ! dpkg -S /etc/hosts.deny >/dev/null 2>&1; then
        rm -f /etc/hosts.deny
    fi
fi
if command -v py3clean >/dev/null 2>&1; then
    py3clean -p scanwatch
fi
exit 0
EOF

cat > "$R/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# scanwatch postrm: purge removes what the daemon and postinst made (the group, state,
# the unit's enablement records); dpkg itself removes the conffiles.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge scanwatch.service >/dev/null || true
    fi
    rm -rf /var/lib/scanwatch /run/scanwatch
    if getent group scanwatch >/dev/null && command -v groupdel >/dev/null; then
        groupdel scanwatch || true
    fi
    rmdir /etc/scanwatch 2>/dev/null || true
fi
exit 0
EOF
chmod 0755 "$R"/DEBIAN/postinst "$R"/DEBIAN/prerm "$R"/DEBIAN/postrm
(cd "$R" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
    | LC_ALL=C sort -z | xargs -0 md5sum) > "$R/DEBIAN/md5sums"
chmod 0644 "$R/DEBIAN/md5sums" "$R/DEBIAN/control" "$R/DEBIAN/conffiles"
find "$R" -type d -exec chmod 0755 {} +

mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >/dev/null
echo "deb: built $DEB"
