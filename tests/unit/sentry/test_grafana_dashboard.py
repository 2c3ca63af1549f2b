"""packaging/grafana-dashboard.json: the fields Grafana's importer needs, a sane
layout, and only series that /metrics really exports."""
import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from scanwatch.sentry.admin import metrics
from test_metrics_collector import SNAP

DASH = Path(__file__).resolve().parents[3] / "packaging" / "grafana-dashboard.json"


def load():
    return json.loads(DASH.read_text())


def exprs(dash):
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_importable_schema_fields():
    d = load()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["uid"] == "scanwatch" and d["title"] and isinstance(d["version"], int)
    assert d["time"]["from"].startswith("now-") and d["time"]["to"] == "now"
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["datasource", "instance"]
    assert d["templating"]["list"][0]["type"] == "datasource"
    assert d["templating"]["list"][0]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["type"] in ("timeseries", "stat") and p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert p["fieldConfig"]["defaults"]["unit"]


def test_panels_tile_the_24_column_grid_without_overlap():
    cells = set()
    for p in load()["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "hwxy") and g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_every_series_used_is_exported_and_the_main_ones_are_drawn():
    exported = {s.name for f in text_string_to_metric_families(metrics.render(SNAP))
                for s in f.samples}
    used = {m for e in exprs(load()) for m in re.findall(r"\bscanwatch_[a-z_]+", e)}
    assert used <= exported, used - exported
    for needed in ("scanwatch_probes_total", "scanwatch_blocks_active",
                   "scanwatch_blocks_total", "scanwatch_kernel_map_entries",
                   "scanwatch_kernel_map_capacity", "scanwatch_process_cpu_seconds_total"):
        assert needed in used
    assert 'sum by (type) (rate(scanwatch_probes_total' in " ".join(exprs(load()))
    # issue 15/17: the fleet's lag has its panel
    assert "scanwatch_fleet_lag_seconds" in used and "scanwatch_fleet_queued" in used
