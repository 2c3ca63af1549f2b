#!/usr/bin/env python3
"""`make e2e`: scanwatch on a freshly built Debian 12, under a real systemd, attacked from outside.

Run as root from the repository. Steps:
  1. a minimal bookworm root from mmdebstrap holding what scripts/setup.sh and
     scripts/install.sh install (cached in $E2E_CACHE keyed by the package list; built
     when missing), and a wheelhouse of the Python dependencies (pip download);
  2. the root is booted with systemd-nspawn --boot (systemd is PID 1) in a network
     namespace of its own whose only link is a veth pair to a scanner namespace:
     the container never reaches the internet, everything it needs comes from the host;
  3. inside, as a new admin: a clean clone of this repository's HEAD, `make setup`,
     `make install`, `systemctl enable --now scanwatch`, `scanwatch status` (root and a
     scanwatch group member); vagrant/e2e.sh scans from the scanner namespace and checks
     the blocks; restart, SIGKILL and stop keep/remove what they must; the unit's
     `systemd-analyze security` exposure; `make uninstall` leaves nothing;
  4. `make deb`'s package (lintian: no errors) in a SECOND fresh container, built from
     a root holding only BASE_PKGS (what any Debian machine has, no setup): `apt install
     ./scanwatch_*.deb` from a local archive made of the .debs its Depends pull in
     (downloaded while that root is built: the container has no network), the same
     attack and lifecycle checks, then `apt purge scanwatch` leaves nothing.
Prints a pass/fail table; exit status 0 only when every check passed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("E2E_CACHE", "/var/cache/scanwatch-e2e"))
WORK = Path(os.environ.get("E2E_WORK", "/var/tmp/scanwatch-e2e"))
SUITE = "bookworm"
MIRROR = os.environ.get("E2E_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("E2E_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
# the unit's exposure score must stay below this (systemd-analyze security, 0 best, 10 worst)
SECURITY_BOUND = float(os.environ.get("E2E_SECURITY_BOUND", "4.0"))
BOX_NS, SCAN_NS = "swe2e-box", "swe2e-scan"
BOX_IF, SCAN_IF = "swe2e0", "swe2e1"
BOX_IP, SCAN_IP = "10.216.0.10", "10.216.0.20"
LISTEN_PORT = 8080          # a listener in the container, for e2e.sh's reach/cut-off checks
WHEELS_IN = "/var/cache/scanwatch-wheels"
ADMIN = "vagrant"           # the admin user vagrant/provision-sentry.sh puts in the scanwatch group
KVER = os.uname().release
# What an admin's fresh machine has besides what setup installs: systemd as init, git to
# clone, sudo (e2e.sh and the README use it), ca-certificates for git/apt over https.
BASE_PKGS = ["systemd", "systemd-sysv", "dbus", "git", "sudo", "ca-certificates", "make",
             "procps", "python3"]

CHECKS: list[tuple[str, bool, str]] = []


def log(msg: str) -> None:
    print(f"e2e: {msg}", flush=True)


def check(name: str, ok: bool, detail: str = "") -> bool:
    CHECKS.append((name, ok, detail))
    log(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}")
    return ok


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("text", True)
    kw.setdefault("capture_output", True)
    return subprocess.run(cmd, **kw)


# --- packages: the lists scripts/setup.sh and scripts/install.sh install ---------------

def bash_array(script: Path, name: str) -> list[str]:
    """Words of the bash array NAME=(...) in SCRIPT, comments removed (one source of truth).
    Comments go first: a ')' inside one must not end the array."""
    lines = script.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{name}=(")), None)
    if start is None:
        raise SystemExit(f"e2e: no {name}=(...) in {script}")
    words = []
    for i, line in enumerate(lines[start:]):
        code = line.split("#", 1)[0]
        if i == 0:
            code = code[len(name) + 2:]
        body, closed = code.split(")", 1)[0], ")" in code
        words += body.split()
        if closed:
            return words
    raise SystemExit(f"e2e: {name}=( in {script} is never closed")


def package_list() -> list[str]:
    setup, install = ROOT / "scripts/setup.sh", ROOT / "scripts/install.sh"
    pkgs = set(BASE_PKGS)
    pkgs |= set(bash_array(setup, "PKGS")) | set(bash_array(setup, "QUIET_PKGS"))
    pkgs |= set(bash_array(setup, "E2E_PKGS"))
    pkgs |= set(bash_array(install, "RUNTIME_PKGS"))
    return sorted(pkgs)


def root_tarball(pkgs: list[str]) -> Path:
    key = hashlib.sha256(("\n".join([SUITE, MIRROR] + pkgs)).encode()).hexdigest()[:12]
    tar = CACHE / f"{SUITE}-{key}.tar"
    if tar.exists():
        log(f"root: cached {tar}")
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    debs = CACHE / "apt"
    debs.mkdir(exist_ok=True)
    tmp = tar.with_suffix(".tar.part")
    log(f"root: mmdebstrap {SUITE} with {len(pkgs)} packages -> {tar}")
    t0 = time.monotonic()
    # the .debs downloaded before are handed in, and the new ones kept (mmdebstrap's
    # documented sync-in/sync-out hooks), so a rebuild after a package list change is quick
    cmd = ["mmdebstrap", "--variant=minbase", "--format=tar", "--include=" + ",".join(pkgs),
           "--aptopt=APT::Install-Recommends \"false\"",
           "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
           "--skip=download/empty",
           f"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/ && cp -a {debs}/. \"$1\"/var/cache/apt/archives/",
           f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
           SUITE, str(tmp),
           f"deb {MIRROR} {SUITE} main", f"deb {MIRROR} {SUITE}-updates main",
           f"deb {SECURITY} {SUITE}-security main"]
    r = run(cmd)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        print(r.stderr[-4000:], file=sys.stderr)
        raise SystemExit("e2e: mmdebstrap failed")
    tmp.rename(tar)
    log(f"root: built in {time.monotonic() - t0:.0f} s")
    return tar


def build_deb() -> Path | None:
    """make deb's package, built by scripts/mkdeb.sh into WORK/deb, and lintian's verdict."""
    d = WORK / "deb"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    r = run(["bash", str(ROOT / "scripts/mkdeb.sh"), str(d)])
    debs = sorted(d.glob("scanwatch_*_all.deb"))
    if not check("make deb: scanwatch_<version>_all.deb built", r.returncode == 0 and len(debs) == 1, out(r)):
        return None
    r = run(["lintian", "--fail-on", "error", str(debs[0])])
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"^[EW]: ", ln)]
    LINTIAN.extend(tags)
    check("make deb: lintian reports no errors", r.returncode == 0, out(r))
    return debs[0]


LINTIAN: list[str] = []


def deb_root(deb: Path) -> tuple[Path, Path]:
    """A root of BASE_PKGS only (a Debian machine nobody ran setup on) and, beside it, a
    local archive of every .deb that `apt install ./DEB` pulls in there: apt downloads
    them inside the root while mmdebstrap builds it (the booted container has no
    network). Both cached, keyed by the package's Depends/Recommends."""
    fields = run(["dpkg-deb", "-f", str(deb), "Depends", "Recommends"]).stdout
    key = hashlib.sha256("\n".join([SUITE, MIRROR, fields] + BASE_PKGS).encode()).hexdigest()[:12]
    tar, repo = CACHE / f"{SUITE}-deb-{key}.tar", CACHE / f"archive-{key}"
    if tar.exists() and (repo / "Packages").exists():
        log(f"deb root: cached {tar}")
        return tar, repo
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    tmp = tar.with_suffix(".tar.part")
    log(f"deb root: mmdebstrap {SUITE} with {len(BASE_PKGS)} packages, archive for {deb.name}")
    t0 = time.monotonic()
    cmd = ["mmdebstrap", "--variant=minbase", "--format=tar", "--include=" + ",".join(BASE_PKGS),
           "--aptopt=APT::Install-Recommends \"false\"",
           "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
           f"--customize-hook=copy-in {deb} /tmp",
           f"--customize-hook=chroot \"$1\" apt-get install -y -q --download-only /tmp/{deb.name}",
           f"--customize-hook=sync-out /var/cache/apt/archives {repo}",
           f"--customize-hook=rm -f \"$1\"/tmp/{deb.name}",
           SUITE, str(tmp),
           f"deb {MIRROR} {SUITE} main", f"deb {MIRROR} {SUITE}-updates main",
           f"deb {SECURITY} {SUITE}-security main"]
    r = run(cmd)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        print(r.stderr[-4000:], file=sys.stderr)
        raise SystemExit("e2e: mmdebstrap (deb root) failed")
    r = run("dpkg-scanpackages --multiversion . /dev/null > Packages", shell=True, cwd=repo)
    if r.returncode != 0:
        raise SystemExit(f"e2e: dpkg-scanpackages: {r.stderr}")
    tmp.rename(tar)
    log(f"deb root: built in {time.monotonic() - t0:.0f} s, archive of "
        f"{len(list(repo.glob('*.deb')))} .debs")
    return tar, repo


def wheelhouse() -> Path:
    """The Python dependencies (pyproject's, with [test], and the build backend) as files,
    downloaded on the host: the container installs them with PIP_NO_INDEX."""
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(proj["project"]["dependencies"]) + list(proj["project"]["optional-dependencies"]["test"])
    reqs += list(proj["build-system"]["requires"]) + ["wheel"]
    reqs = [r.split("#")[0].strip() for r in reqs]
    d = CACHE / "pip"
    d.mkdir(parents=True, exist_ok=True)
    stamp = d / ".requirements"
    want = "\n".join(sorted(reqs))
    if stamp.exists() and stamp.read_text() == want:
        return d
    log(f"wheelhouse: pip download {len(reqs)} requirements -> {d}")
    r = run(["/usr/bin/python3", "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", str(d)] + reqs)
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        raise SystemExit("e2e: pip download failed")
    stamp.write_text(want)
    return d


def header_binds() -> list[str]:
    """Read-only binds of the host's kernel build tree: bcc compiles the XDP program against
    /lib/modules/$(uname -r)/build, which setup links to Debian's linux-headers trees."""
    mod = Path("/lib/modules") / KVER
    paths = [mod]
    for link in ("build", "source"):
        p = mod / link
        if p.is_symlink():
            paths.append(Path(os.path.realpath(p)))
    # the amd64 tree's scripts/ and tools point into linux-kbuild-X.Y
    for p in list(paths[1:]):
        for sub in ("scripts", "tools"):
            s = p / sub
            if s.is_symlink():
                target = Path(os.path.realpath(s))
                for parent in target.parents:
                    if parent.parent == Path("/usr/lib") or parent.parent == Path("/usr/src"):
                        paths.append(parent)
                        break
    return [f"--bind-ro={p}" for p in dict.fromkeys(paths) if p.exists()]


# --- the booted container -------------------------------------------------------------

class Box:
    def __init__(self, name: str, tar: Path, wheels: Path, binds: tuple[str, ...] = ()):
        self.name = name
        self.binds = list(binds)
        self.dir = WORK / name
        self.root = self.dir / "root"
        self.tar, self.wheels = tar, wheels
        self.proc: subprocess.Popen | None = None
        self.leader = 0

    def unpack(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.root.mkdir(parents=True)
        r = run(["tar", "-C", str(self.root), "-xf", str(self.tar)])
        if r.returncode:
            raise SystemExit(f"e2e: tar: {r.stderr}")
        # a fresh machine's identity: systemd makes one at first boot
        (self.root / "etc/machine-id").write_text("")
        (self.root / "etc/hostname").write_text(self.name + "\n")

    def net(self) -> None:
        netns_down()
        for ns in (BOX_NS, SCAN_NS):
            run(["ip", "netns", "add", ns], check=True)
        run(["ip", "link", "add", BOX_IF, "netns", BOX_NS, "type", "veth",
             "peer", "name", SCAN_IF, "netns", SCAN_NS], check=True)
        for ns, ifc, ip in ((BOX_NS, BOX_IF, BOX_IP), (SCAN_NS, SCAN_IF, SCAN_IP)):
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifc], check=True)
            run(["ip", "-n", ns, "link", "set", ifc, "up"], check=True)
            run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)

    def boot(self) -> bool:
        self.net()
        out = open(self.dir / "console.log", "w")
        cmd = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
               "-D", str(self.root), f"--machine={self.name}", "--console=read-only",
               # its own network namespace, made above: the veth to the scanner is its
               # only link (nspawn grants CAP_NET_ADMIN with a private network)
               f"--network-namespace-path=/run/netns/{BOX_NS}",
               # what the service needs beyond nspawn's default set: loading the program
               # and its maps, and the verifier's view for a non-privileged loader
               "--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN",
               # nspawn's seccomp filter refuses bpf(2) and perf_event_open(2) by default
               "--system-call-filter=bpf perf_event_open",
               f"--bind-ro={self.wheels}:{WHEELS_IN}"] + header_binds() + self.binds
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            if not self.leader:
                self.leader = find_leader(self.proc.pid)
            if self.leader:
                st = self.sh("systemctl is-system-running", timeout=10).stdout.strip()
                if st in ("running", "degraded"):
                    return check(f"{self.name}: boots to multi-user (systemd PID 1: {st})", True)
            time.sleep(1)
        return check(f"{self.name}: boots to multi-user", False,
                     (self.dir / "console.log").read_text()[-1500:])

    def sh(self, script: str, user: str = "root", timeout: float = 900,
           stdin: str | None = None) -> subprocess.CompletedProcess:
        """SCRIPT in the container's namespaces, by bash -l, as USER, with the environment of
        a login (PIP_NO_INDEX/PIP_FIND_LINKS: the container's pip uses the host's wheelhouse)."""
        env = ["env", "-i", "HOME=/root", "TERM=dumb", "LANG=C.UTF-8",
               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "PIP_NO_INDEX=1", f"PIP_FIND_LINKS={WHEELS_IN}"]
        script = ("cd ~ && " if user == "root" else "cd / && ") + script
        inner = ["bash", "-c", script] if user == "root" else \
            ["runuser", "-u", user, "--", "bash", "-c", script]
        try:
            return run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C",
                        "-r", "-w"] + env + inner, timeout=timeout, input=stdin)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, str(e.stdout or ""), f"timeout {timeout}s")

    def enter_prefix(self) -> str:
        return (f"nsenter -t {self.leader} -m -u -i -n -p -C -r -w env -i "
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root")

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGRTMIN+4 asks systemd (PID 1) for a clean poweroff
            try:
                os.kill(self.leader, 38) if self.leader else None
                self.proc.wait(timeout=60)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()
                self.proc.wait()
        netns_down()
        if os.environ.get("E2E_KEEP") != "1" and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)


def find_leader(nspawn_pid: int) -> int:
    """The container's PID 1 (systemd): nspawn's child that runs /sbin/init / systemd."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == nspawn_pid and (d / "comm").read_text().strip() == "systemd":
                return int(d.name)
        except (OSError, ValueError, IndexError):
            continue
    return 0


def netns_down() -> None:
    for ns in (BOX_NS, SCAN_NS):
        run(["ip", "netns", "del", ns])


# --- the checks -------------------------------------------------------------------------

def out(r: subprocess.CompletedProcess) -> str:
    return (r.stdout + r.stderr).strip()[-1500:]


def scan_and_check(box: Box, scan: str, kind: str, label: str) -> bool:
    """One nmap scan from the scanner namespace; the scanner is then blocked everywhere."""
    box.sh(f"scanwatch unblock {SCAN_IP}")
    r = run(["ip", "netns", "exec", SCAN_NS, "nmap", "-n", "-Pn", "-T5", "--max-retries", "0",
             scan, "-p", "1-30", BOX_IP], timeout=120)
    if r.returncode:
        return check(label, False, out(r))
    return blocked(box, kind, label)


def blocked(box: Box, kind: str, label: str) -> bool:
    r = box.sh(f"bash -s -- {SCAN_IP} '{kind}'", stdin=(ROOT / "vagrant/sentry-check.sh").read_text())
    return check(label, r.returncode == 0, out(r))


def main_pid(box: Box) -> str:
    return box.sh("systemctl show -P MainPID scanwatch").stdout.strip()


def wait_active(box: Box, old_pid: str = "", secs: float = 60) -> bool:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        pid = main_pid(box)
        if box.sh("systemctl is-active -q scanwatch").returncode == 0 and pid not in ("", "0", old_pid):
            # the daemon answers on its control socket once the program is attached
            if box.sh("scanwatch status >/dev/null").returncode == 0:
                return True
        time.sleep(1)
    return False


def link_show(box: Box) -> subprocess.CompletedProcess:
    """The container's interface seen from the host (its netns is BOX_NS): the box needs no
    iproute2 of its own (sw-deb's root has none), and a missing `ip` cannot pass for
    "no XDP attached"."""
    return run(["ip", "-n", BOX_NS, "-d", "link", "show", "dev", BOX_IF])


def xdp_attached(box: Box) -> bool | None:
    """True/False; None when the interface could not be read (fails both checks)."""
    r = link_show(box)
    return None if r.returncode else "xdp" in r.stdout


def attack_and_lifecycle(box: Box) -> None:
    """Everything after the install: status, scans, restart, SIGKILL, stop."""
    n = box.name
    check(f"{n}: systemctl enable --now scanwatch",
          box.sh("systemctl enable --now scanwatch").returncode == 0 and wait_active(box),
          out(box.sh("systemctl status --no-pager scanwatch; journalctl -u scanwatch --no-pager | tail -n 30")))
    check(f"{n}: scanwatch status as root", box.sh("scanwatch status").returncode == 0,
          out(box.sh("scanwatch status")))
    box.sh(f"id {ADMIN} >/dev/null 2>&1 || useradd -m {ADMIN}; usermod -aG scanwatch {ADMIN}")
    r = box.sh("scanwatch status", user=ADMIN)
    check(f"{n}: scanwatch status as a scanwatch group member", r.returncode == 0, out(r))
    # a listener for e2e.sh's reach / cut-off checks (no sshd in a minimal root)
    box.sh(f"systemd-run --unit=e2e-listener python3 -m http.server -b {BOX_IP} {LISTEN_PORT}")
    shim = WORK / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    (shim / "sudo").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", E2E_SENTRY=box.enter_prefix(),
               E2E_ATTACKER=f"ip netns exec {SCAN_NS}", E2E_SENTRY_IP=BOX_IP,
               E2E_ATTACKER_IP=SCAN_IP, E2E_PORT=str(LISTEN_PORT))
    for scan in ("-sS", "-sT", "-sF", "-sN", "-sX", "-sU"):
        r = run(["bash", str(ROOT / "vagrant/e2e.sh"), scan], env=env, timeout=300)
        row = [ln for ln in r.stdout.splitlines() if ln.startswith(scan + " ")]
        check(f"{n}: vagrant/e2e.sh {scan} (reach, nmap, status, nft, hosts.deny, cut-off)",
              r.returncode == 0, (row[0] if row else "") + "\n" + r.stderr[-800:])
    r = box.sh("journalctl -u scanwatch --no-pager | grep -c attackalert")
    check(f"{n}: journalctl -u scanwatch has attackalert lines",
          r.returncode == 0 and int(r.stdout.strip() or 0) > 0, out(r))
    # one block left in force for the lifecycle checks
    scan_and_check(box, "-sX", "XMAS", f"{n}: blocked after nmap -sX")
    check(f"{n}: XDP attached while running", xdp_attached(box) is True, out(link_show(box)))
    pid = main_pid(box)
    box.sh("systemctl restart scanwatch")
    check(f"{n}: systemctl restart scanwatch comes back", wait_active(box, pid),
          out(box.sh("systemctl status --no-pager scanwatch; journalctl -u scanwatch --no-pager | tail -n 25")))
    blocked(box, "XMAS", f"{n}: block kept over systemctl restart")
    pid = main_pid(box)
    box.sh("systemctl kill -s KILL scanwatch")
    check(f"{n}: systemd restarts it after SIGKILL", wait_active(box, pid, secs=90),
          out(box.sh("systemctl status --no-pager scanwatch; journalctl -u scanwatch --no-pager | tail -n 25")))
    blocked(box, "XMAS", f"{n}: block in force after SIGKILL and restart")
    box.sh("systemctl stop scanwatch")
    check(f"{n}: systemctl stop detaches XDP", xdp_attached(box) is False,
          out(link_show(box)))
    box.sh("systemctl start scanwatch")
    wait_active(box)


def security_score(box: Box) -> None:
    r = box.sh("systemd-analyze security --no-pager scanwatch.service")
    m = re.search(r"Overall exposure level for scanwatch\.service:\s*([0-9.]+)\s*(\S+)", r.stdout)
    score = float(m.group(1)) if m else 99.0
    SCORES[box.name] = f"{m.group(1)} {m.group(2)}" if m else "?"
    check(f"{box.name}: systemd-analyze security exposure {SCORES[box.name]} < {SECURITY_BOUND}",
          score < SECURITY_BOUND, out(r))


SCORES: dict[str, str] = {}

LEFTOVERS = {
    "table inet scanwatch": "nft list table inet scanwatch >/dev/null 2>&1",
    "hosts.deny line": f"grep -qF {SCAN_IP} /etc/hosts.deny 2>/dev/null",
    # neither root has tcp-wrappers: the daemon made the file, so removal takes it away
    "hosts.deny file (empty, no package's)": "test -f /etc/hosts.deny && ! test -s /etc/hosts.deny && "
                                             "! dpkg -S /etc/hosts.deny >/dev/null 2>&1",
    "unit": "systemctl cat scanwatch.service >/dev/null 2>&1 || "
            "ls /etc/systemd/system/*/scanwatch.service >/dev/null 2>&1",
    "group": "getent group scanwatch >/dev/null",
    "user": "getent passwd scanwatch >/dev/null",
    "files": "ls -d /opt/scanwatch /etc/scanwatch /var/lib/scanwatch /run/scanwatch "
             "/usr/local/bin/scanwatch /usr/bin/scanwatch /usr/lib/python3/dist-packages/scanwatch* "
             "/usr/local/share/bash-completion/completions/scanwatch /lib/systemd/system/scanwatch.service "
             "/usr/share/bash-completion/completions/scanwatch /usr/share/zsh/vendor-completions/_scanwatch "
             "/usr/share/doc/scanwatch /usr/share/man/man1/scanwatch.1.gz "
             "/var/lib/systemd/deb-systemd-helper-enabled/scanwatch.service "
             "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/scanwatch.service "
             "2>/dev/null | grep .",
    "package": "dpkg-query -W -f='${db:Status-Abbrev}' scanwatch 2>/dev/null | grep -q .",
}


def nothing_left(box: Box, what: str) -> None:
    found = [k for k, cmd in LEFTOVERS.items() if box.sh(cmd).returncode == 0]
    check(f"{box.name}: {what} leaves nothing", not found, "left: " + ", ".join(found))


def source_install(tar: Path, wheels: Path) -> None:
    box = Box("sw-src", tar, wheels)
    try:
        box.unpack()
        # a clean clone of this tree's HEAD, where an admin would put it
        # (at /vagrant: vagrant/provision-sentry.sh, reused below, installs from there)
        clone = box.root / "vagrant"
        r = run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)])
        if not check("clean clone of HEAD", r.returncode == 0, out(r)):
            return
        if not box.boot():
            return
        t0 = time.monotonic()
        r = box.sh("cd /vagrant && make setup")
        check(f"sw-src: README set-up (make setup), offline ({time.monotonic() - t0:.0f} s)",
              r.returncode == 0, out(r))
        # the Vagrant sentry's provisioning: make install, its admin in the scanwatch group
        box.sh(f"useradd -m {ADMIN}")
        r = box.sh(f"bash /vagrant/vagrant/provision-sentry.sh {SCAN_IP}")
        if not check("sw-src: make install (vagrant/provision-sentry.sh)", r.returncode == 0, out(r)):
            return
        attack_and_lifecycle(box)
        security_score(box)
        r = box.sh("cd /vagrant && make uninstall")
        check("sw-src: make uninstall", r.returncode == 0, out(r))
        nothing_left(box, "make uninstall")
    finally:
        box.shutdown()


ARCHIVE_IN = "/srv/scanwatch-archive"


def deb_install(deb: Path, wheels: Path) -> None:
    tar, repo = deb_root(deb)
    box = Box("sw-deb", tar, wheels, binds=(f"--bind-ro={repo}:{ARCHIVE_IN}",))
    try:
        box.unpack()
        shutil.copy(deb, box.root / "root" / deb.name)
        if not box.boot():
            return
        # the local archive stands in for the Debian mirror the admin's machine reaches
        box.sh(f"mv /etc/apt/sources.list /etc/apt/sources.list.e2e-off; "
               f"echo 'deb [trusted=yes] file:{ARCHIVE_IN} ./' > /etc/apt/sources.list.d/e2e.list")
        t0 = time.monotonic()
        r = box.sh(f"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt install -y ./{deb.name}")
        check(f"sw-deb: apt install ./{deb.name} ({time.monotonic() - t0:.0f} s)", r.returncode == 0, out(r))
        if r.returncode:
            return
        r = box.sh("test ! -e /opt/scanwatch && "
                   "head -n1 /usr/bin/scanwatch | grep -qx '#!/usr/bin/python3' && "
                   "python3 -c 'import scanwatch, click, pyroute2, psutil, bcc, nftables'")
        check("sw-deb: /usr/bin/scanwatch runs on Debian's python3 and packages, no venv",
              r.returncode == 0, out(r))
        check("sw-deb: postinst enabled and started scanwatch.service",
              box.sh("systemctl is-enabled -q scanwatch").returncode == 0 and wait_active(box),
              out(box.sh("systemctl status --no-pager scanwatch; journalctl -u scanwatch --no-pager | tail -n 30")))
        check("sw-deb: postinst made the scanwatch group", box.sh("getent group scanwatch").returncode == 0)
        attack_and_lifecycle(box)
        security_score(box)
        r = box.sh("DEBIAN_FRONTEND=noninteractive apt purge -y scanwatch")
        check("sw-deb: apt purge scanwatch", r.returncode == 0, out(r))
        nothing_left(box, "apt purge")
    finally:
        box.shutdown()


def table(t_total: float) -> int:
    fails = sum(1 for _, ok, _ in CHECKS if not ok)
    w = max(len(n) for n, _, _ in CHECKS) if CHECKS else 10
    print()
    print(f"{'CHECK':<{w}}  RESULT")
    for name, ok, _ in CHECKS:
        print(f"{name:<{w}}  {'ok' if ok else 'FAIL'}")
    print()
    for n, s in SCORES.items():
        print(f"systemd-analyze security scanwatch.service ({n}): {s}")
    print(f"lintian on the .deb: {len(LINTIAN)} errors/warnings" + "".join("\n  " + t for t in LINTIAN))
    verdict = "PASS" if not fails else f"FAIL ({fails} failed)"
    print(f"e2e: {verdict}: {len(CHECKS) - fails}/{len(CHECKS)} checks in {t_total:.0f} s")
    return 1 if fails else 0


def main() -> int:
    if os.geteuid() != 0:
        print("e2e: needs root (mmdebstrap, systemd-nspawn, network namespaces)", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    lock = open(WORK / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"e2e: another make e2e is running (lock {WORK}/.lock)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    tar = root_tarball(package_list())
    wheels = wheelhouse()
    log(f"root and wheelhouse ready in {time.monotonic() - t0:.0f} s")
    try:
        if os.environ.get("E2E_ONLY") != "deb":
            source_install(tar, wheels)
        if os.environ.get("E2E_ONLY") != "src":
            deb = build_deb()
            if deb:
                deb_install(deb, wheels)
    finally:
        netns_down()
    return table(time.monotonic() - t0)


if __name__ == "__main__":
    sys.exit(main())
