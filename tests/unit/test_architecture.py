"""ARCHITECTURE.md stays true: every path it names exists, and the layout rules it states hold."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "ARCHITECTURE.md").read_text()
# A path: a word with a slash or a file suffix, in backticks or in the drawing.
PATH_RE = re.compile(r"(?<![\w/.-])((?:scanwatch|bpf|tests|bench|sentry|scan|lsof)/[\w./{},-]*"
                     r"|[\w-]+\.(?:py|md|h|c))(?![\w/])")
SHORT = ("sentry/", "scan/", "lsof/")  # spelled inside the package in the text


def _expand(path):
    m = re.search(r"\{([^}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",")
            for p in _expand(path[:m.start()] + alt + path[m.end():])]


def _resolve(name):
    for base in (ROOT, ROOT / "scanwatch", ROOT / "scanwatch" / "sentry"):
        if (base / name).exists():
            return True
    # a bare file name: somewhere in the package, bpf or tests
    if "/" not in name:
        return any(ROOT.glob(f"scanwatch/**/{name}")) or any(ROOT.glob(f"tests/**/{name}")) \
            or (ROOT / "bpf" / name).exists()
    return False


def test_every_path_in_architecture_md_exists():
    names = {p.rstrip(".,") for m in PATH_RE.finditer(DOC) for p in _expand(m.group(1))}
    assert len(names) > 30, "the map names its rooms"
    missing = sorted(n for n in names if not _resolve(n.rstrip("/")))
    assert missing == [], f"ARCHITECTURE.md names paths that do not exist: {missing}"


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def _importers(prefix):
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scanwatch").rglob("*.py")
                  if any(m == prefix or m.startswith(prefix + ".") for m in _imports(p)))


def test_only_the_loader_imports_bcc():
    assert _importers("bcc") == ["scanwatch/sentry/kernel/loader.py"]


def test_only_the_firewall_talks_to_nftables():
    assert _importers("nftables") == ["scanwatch/sentry/respond/firewall.py"]


def test_policy_is_pure():
    mods = set(_imports(ROOT / "scanwatch/sentry/policy.py"))
    assert not any(m.split(".")[0] in ("bcc", "nftables", "subprocess", "socket") for m in mods)
    assert not any("kernel" in m or "respond" in m for m in mods), mods


def test_scan_and_lsof_wings_do_not_reach_into_the_sentry():
    for wing in ("scan", "lsof"):
        for p in (ROOT / "scanwatch" / wing).rglob("*.py"):
            assert not any("sentry" in m.split(".") for m in _imports(p)), p


def test_modules_stay_small_or_say_why():
    over = []
    for p in (ROOT / "scanwatch").rglob("*.py"):
        lines = p.read_text().splitlines()
        if len(lines) > 500 and not any("longer than 500 lines" in l for l in lines[:15]):
            over.append(f"{p.relative_to(ROOT)} ({len(lines)} lines)")
    assert over == [], f"modules over ~500 lines without a reason at the top: {over}"


def test_view_libraries_stay_in_the_views():
    # the daemon imports neither: a live view or a chart never costs it memory or start-up
    assert _importers("rich") == ["scanwatch/sentry/admin/top.py"]
    assert _importers("matplotlib") == ["scanwatch/sentry/admin/charts.py"]
    assert _importers("prometheus_client") == ["scanwatch/sentry/admin/metrics.py"]


def test_only_the_fleet_link_talks_to_redis():
    # issue 15: one module carries every Redis call; the rest of the fleet is pure
    assert _importers("redis") == ["scanwatch/sentry/fleet/link.py"]
