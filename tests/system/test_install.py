"""`make install` / `make uninstall`, the systemd unit, the Vagrantfile and the shell scripts.

CI cannot boot the Vagrant VMs, so it checks what it can:

* shellcheck on vagrant/*.sh and scripts/*.sh;
* `vagrant validate`, once per provider with that provider's settings checked (libvirt
  through Debian's vagrant-libvirt plugin; VirtualBox through a VBoxManage stub that only
  answers `--version`);
* `systemd-analyze verify` on packaging/scanwatch.service, with a stub ExecStart before
  install and as installed after it;
* `make install` into the real /opt/scanwatch, /etc/scanwatch, /usr/local (CI's
  throwaway machine), then the unit's command line, `/usr/local/bin/scanwatch run -c
  /etc/scanwatch/scanwatch.conf`, in a lab's target namespace, scanned with every nmap
  scan type by vagrant/e2e.sh from the scanner namespace; then `make uninstall`, and
  nothing of scanwatch is left.

The installed daemon runs with its default paths inside a private mount namespace in
which /etc is a copy and /run and /var/lib/scanwatch are temp dirs, so the machine's own
/etc/hosts.deny, /run and state are never touched (and vagrant/sentry-check.sh finds
everything where it looks on the VM).
"""
import fcntl
import grp
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sentryproc import connect, listen, nmap

REPO = Path(__file__).resolve().parents[2]
UNIT_SRC = REPO / "packaging" / "scanwatch.service"
PREFIX = Path("/opt/scanwatch")
BIN = Path("/usr/local/bin/scanwatch")
CONFDIR = Path("/etc/scanwatch")
CONF = CONFDIR / "scanwatch.conf"
IGNORE = CONFDIR / "scanwatch.ignore"
STATEDIR = Path("/var/lib/scanwatch")
UNIT = Path("/usr/local/lib/systemd/system/scanwatch.service")
WANTS = Path("/etc/systemd/system/multi-user.target.wants/scanwatch.service")
COMPLETIONS = (Path("/usr/local/share/bash-completion/completions/scanwatch"),
               Path("/usr/local/share/zsh/site-functions/_scanwatch"))
# Everything install may create, directories it may have to make included.
FOOTPRINT = (PREFIX, BIN, CONFDIR, STATEDIR, Path("/run/scanwatch"), UNIT, UNIT.parent,
             UNIT.parent.parent, WANTS, *COMPLETIONS, *(p.parent for p in COMPLETIONS),
             *(p.parent.parent for p in COMPLETIONS))
LOCK = "/tmp/scanwatch-test-install.lock"


def sh(*argv, timeout=300, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kw)


def make(target, netns=None):
    argv = ["make", "-s", "-C", REPO, target]
    res = sh(*(["ip", "netns", "exec", netns] if netns else []), *argv)
    assert res.returncode == 0, f"make {target} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def group_exists(name="scanwatch"):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def systemd_running():
    return os.path.isdir("/run/systemd/system")


# --- the static checks -------------------------------------------------------------------

def test_shell_scripts_pass_shellcheck():
    scripts = sorted(map(str, [*REPO.glob("vagrant/*.sh"), *REPO.glob("scripts/*.sh")]))
    assert any(s.endswith("e2e.sh") for s in scripts) and any(
        s.endswith("install.sh") for s in scripts), scripts
    res = sh("shellcheck", *scripts)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_vagrantfile_validates(tmp_path, provider):
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"),
               VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"), VAGRANT_DEFAULT_PROVIDER=provider,
               VAGRANT_CHECKPOINT_DISABLE="1")
    if provider == "virtualbox":
        # Vagrant checks the provider's settings only when the provider is usable; this
        # VBoxManage answers the one question that decides it.
        stub = tmp_path / "bin"
        stub.mkdir()
        (stub / "VBoxManage").write_text("#!/bin/sh\necho 7.0.10r158379\n")
        (stub / "VBoxManage").chmod(0o755)
        env["PATH"] = f"{stub}:{env['PATH']}"
    res = sh("vagrant", "validate", cwd=REPO, env=env, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "validated successfully" in out, out


def test_unit_file_verifies_and_keeps_its_hardening(tmp_path):
    # verify wants ExecStart's binary to exist: point it at a stub for the check
    stub = tmp_path / "scanwatch"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT_SRC.read_text()
    unit = tmp_path / "scanwatch.service"
    unit.write_text(text.replace("/usr/local/bin/scanwatch", str(stub)))
    res = sh("systemd-analyze", "verify", unit)
    # verify exits 0 on lines it ignores, with a warning: no output is the pass
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["ExecStart"] == ["/usr/local/bin/scanwatch run -c /etc/scanwatch/scanwatch.conf"]
    assert settings["Type"] == ["simple"] and settings["Restart"] == ["on-failure"]
    assert set(settings["CapabilityBoundingSet"][0].split()) == {
        "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("SupplementaryGroups", "scanwatch"), ("StateDirectory", "scanwatch"),
                       ("RuntimeDirectory", "scanwatch")):
        assert settings[key] == [value], key
    # bcc reads the kernel headers under /usr/lib/modules, which ProtectKernelModules hides
    assert "ProtectKernelModules" not in settings


# --- install, run, scan, uninstall ---------------------------------------------------------

class InstalledSentry:
    """The installed daemon in a lab's target namespace, in a private mount namespace
    where /etc is a copy and /run and /var/lib/scanwatch are temp dirs."""

    def __init__(self, lab, tmp):
        self.lab = lab
        etc, run, state = tmp / "etc", tmp / "run", tmp / "state"
        subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
        run.mkdir()
        state.mkdir(mode=0o700)
        script = (f"mount --bind {etc} /etc && mount --bind {run} /run && "
                  f"mount --bind {state} {STATEDIR} && echo ready && exec sleep infinity")
        # ip netns exec and unshare exec their commands: the pid is the holder's
        self.holder = lab.popen(lab.target_ns, "unshare", "--mount", "--propagation", "private",
                                "sh", "-c", script, stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready"
        self.enter = ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "--"]
        self.log_path = tmp / "daemon.log"
        self.daemon = None

    def run(self, *argv, **kw):
        return sh(*self.enter, *argv, **kw)

    def start(self):
        self.log_fh = open(self.log_path, "w")
        self.daemon = subprocess.Popen([*self.enter, str(BIN), "run", "-c", str(CONF)],
                                       stdout=self.log_fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while self.run(BIN, "status").returncode != 0:
            assert self.daemon.poll() is None and time.monotonic() < deadline, \
                f"the installed scanwatch did not start:\n{self.log()}"
            time.sleep(0.2)

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.log_fh.close()
        return self.daemon.returncode if self.daemon else None


@pytest.fixture
def install_lock():
    """One install test at a time on this machine (the paths are system-wide)."""
    with open(LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def test_make_install_runs_the_service_command_and_uninstall_leaves_nothing(
        lab, tmp_path, install_lock):
    if PREFIX.exists():  # a previous run that died half-way
        make("uninstall")
    if CONFDIR.exists():
        pytest.fail(f"{CONFDIR} exists (a config kept by an uninstall?); this test installs "
                    "and uninstalls system-wide: move it away first")
    before = {p: os.path.lexists(p) for p in FOOTPRINT}
    group_before = group_exists()
    deny = Path("/etc/hosts.deny")
    deny_before = deny.read_bytes() if deny.exists() else None
    try:
        _install_run_uninstall(lab, tmp_path, group_before)
    finally:
        if PREFIX.exists():
            sh("make", "-s", "-C", REPO, "uninstall")
        if not before[CONFDIR] and CONFDIR.exists():
            shutil.rmtree(CONFDIR)
    assert {p: os.path.lexists(p) for p in FOOTPRINT} == before
    assert group_exists() == group_before
    assert (deny.read_bytes() if deny.exists() else None) == deny_before


def _install_run_uninstall(lab, tmp, group_before):
    out = make("install")
    assert "install: installed scanwatch " in out, out
    if not systemd_running():
        assert "systemd is not running here" in out and "not started" in out, out
    assert BIN.is_symlink() and os.readlink(BIN) == str(PREFIX / "bin" / "scanwatch")
    assert "version" in sh(BIN, "--version").stdout
    assert (STATEDIR.stat().st_mode & 0o777) == 0o700
    assert group_exists()
    assert UNIT.read_text() == UNIT_SRC.read_text()
    assert all(p.is_file() for p in COMPLETIONS)
    conf = CONF.read_text()
    assert "#TCP_PORTS=" in conf and "\nTCP_PORTS" not in conf  # defaults, commented out
    res = sh(BIN, "config", "check", "-c", CONF)
    assert res.returncode == 0 and f"from {IGNORE}" in res.stdout, res.stdout + res.stderr
    # the installed package carries its BPF program (package data)
    res = sh(PREFIX / "bin" / "python3", "-I", "-c",
             "from scanwatch.sentry.kernel import contract as K; print(K.PROGRAM)", cwd="/")
    assert res.stdout.strip().startswith(str(PREFIX / "lib")), res.stdout + res.stderr

    # idempotent: a second run changes nothing and says nothing but the systemd note
    again = [l for l in make("install").splitlines() if "systemd is not running" not in l]
    assert again == [], again

    res = sh("systemd-analyze", "verify", UNIT)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr

    lab.wait_reachable()
    port = 2222
    listen(lab, port)
    sentry = InstalledSentry(lab, tmp)
    sentry.start()
    assert "is now active on swt0" in sentry.log()
    # an admin in the scanwatch group (not root) asks for the status
    gid = grp.getgrnam("scanwatch").gr_gid
    res = sentry.run("setpriv", "--reuid=65534", "--regid=65534", f"--groups={gid}",
                     BIN, "status")
    assert res.returncode == 0 and "scanwatch is running" in res.stdout, res.stdout + res.stderr

    # vagrant/e2e.sh, with the namespaces standing in for the VMs
    shim = tmp / "bin"
    shim.mkdir()
    (shim / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    (shim / "sudo").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}",
               E2E_SENTRY=" ".join(sentry.enter), E2E_ATTACKER=f"ip netns exec {lab.scanner_ns}",
               E2E_SENTRY_IP=lab.target_ip4, E2E_ATTACKER_IP=lab.scanner_ip4, E2E_PORT=str(port))
    res = sh(REPO / "vagrant" / "e2e.sh", env=env, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "e2e: PASS (6 scans, every check ok)" in out, \
        f"{out}\n--- daemon log:\n{sentry.log()}"
    rows = [l.split() for l in res.stdout.splitlines() if l.startswith("-s")]
    assert [r[0] for r in rows] == ["-sS", "-sT", "-sF", "-sN", "-sX", "-sU"], out
    assert all(r[2:] == ["ok"] * 6 for r in rows), out
    for kind in ("SYN/Normal", "FIN", "NULL", "XMAS", "UDP"):
        assert f"{kind} scan from host: {lab.scanner_ip4}" in sentry.log().replace("  ", " ")

    # leave the scanner blocked, stop the daemon: the nft block outlives it
    nmap(lab, "-sS", "-p", "1-20")
    deadline = time.monotonic() + 10
    while lab.scanner_ip4 not in sentry.run(BIN, "status").stdout:
        assert time.monotonic() < deadline, sentry.log()
        time.sleep(0.1)
    assert sentry.stop() == 0, sentry.log()
    assert lab.run(lab.target_ns, "nft", "list", "table", "inet", "scanwatch").returncode == 0
    assert not connect(lab, lab.target_ip4, port)

    # the admin edits the config; a later install keeps it and offers the new default
    with open(CONF, "a") as fh:
        fh.write('SCAN_TRIGGER="1"\n')
    edited = CONF.read_text()
    last = PREFIX / "share" / "scanwatch" / "scanwatch.conf.installed"
    last.write_text(last.read_text() + "# an older default\n")
    out = make("install")
    assert f"kept {CONF} (you changed it); the new default is {CONF}.dist" in out, out
    assert CONF.read_text() == edited and Path(f"{CONF}.dist").is_file()

    # uninstall, in the namespace the daemon ran in (its nft table is there)
    out = make("uninstall", netns=lab.target_ns)
    assert "scanwatch flush: removed table inet scanwatch" in out, out
    assert f"kept {CONF}: you changed it" in out, out
    assert lab.run(lab.target_ns, "nft", "list", "table", "inet", "scanwatch").returncode != 0
    assert connect(lab, lab.target_ip4, port), "uninstall left the scanner blocked"
    for path in (PREFIX, BIN, UNIT, WANTS, STATEDIR, IGNORE, Path(f"{CONF}.dist"), *COMPLETIONS):
        assert not os.path.lexists(path), f"{path} is left after make uninstall"
    assert sorted(os.listdir(CONFDIR)) == ["scanwatch.conf"] and CONF.read_text() == edited
    assert group_exists() == group_before
