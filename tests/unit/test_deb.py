"""make deb (scripts/mkdeb.sh): the package depends on Debian's package for every Python
dependency pyproject.toml declares, so the installed tool needs no virtualenv."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _relations(name):
    """Package names of the DEPENDS / RECOMMENDS assignments in scripts/mkdeb.sh."""
    text = (ROOT / "scripts/mkdeb.sh").read_text()
    values = re.findall(rf'^{name}\+?="([^"]*)"', text, re.M)
    return {alt.strip().split()[0] for v in values for rel in v.split(",") if rel.strip()
            for alt in rel.split("|")}


def test_every_python_dependency_has_its_debian_package():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in deps]
    wanted = {"python3-" + n.lower().replace("_", "-") for n in names}
    have = _relations("DEPENDS") | _relations("RECOMMENDS")
    assert wanted - have == set()


def test_the_debian_only_bindings_are_hard_dependencies():
    # not on PyPI, so not in pyproject.toml: the daemon cannot start without them
    assert {"python3-bpfcc", "python3-nftables", "nftables", "python3-systemd"} <= _relations("DEPENDS")
