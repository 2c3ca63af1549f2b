"""Charts for `scanwatch report`, drawn by matplotlib (Agg: no display needed), saved
as PNG files or inlined as base64 PNG in one self-contained HTML page (no script, no
stylesheet and no image fetched from anywhere: it is opened on air-gapped desks)."""
import base64
import html
import io
import os
import time

from ...errors import StateError
from .summary import service_name

CHARTS = ("reports_per_hour", "top_sources", "ports", "blocks_per_hour", "time_to_block")
TITLES = {"reports_per_hour": "Reports per hour by scan type",
          "top_sources": "Top sources (reports and blocks)",
          "ports": "Ports probed most",
          "blocks_per_hour": "Blocks per hour",
          "time_to_block": "Time from first report to block"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # before pyplot: never look for a display
    import matplotlib.pyplot as plt
    return plt


MAX_BARS = 96


def _bins(hours):
    """Hours grouped into at most MAX_BARS bars (a year of history stays readable):
    [(label, [hour, ...])]; a label is HH:00 within a day, else the date."""
    size = -(-len(hours) // MAX_BARS)
    bins = [hours[i:i + size] for i in range(0, len(hours), size)]
    daily = len(hours) > 48
    return [(b[0][:10] if daily else b[0][11:13] + ":00", b) for b in bins]


def _time_axis(ax, bins):
    step = max(1, len(bins) // 12)
    ticks = list(range(0, len(bins), step))
    ax.set_xticks(ticks, [bins[i][0] for i in ticks], rotation=45, fontsize=7)


def _port_label(port_proto):
    name = service_name(port_proto)  # which service the attackers looked for
    return f"{port_proto} {name}" if name else port_proto


def figures(s, top=15):
    """{name: matplotlib Figure} for Summary s; charts with nothing to show say so."""
    plt = _pyplot()
    figs = {}
    bins = _bins(s.hours())
    x = range(len(bins))

    fig, ax = plt.subplots(figsize=(9, 3.6))
    bottom = [0] * len(bins)
    for kind in s.scan_types():
        vals = [sum(s.per_hour.get((h, kind), 0) for h in b) for _, b in bins]
        ax.bar(x, vals, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, vals)]
    _time_axis(ax, bins)
    ax.set_ylabel("reports")
    if s.scan_types():
        ax.legend(fontsize=7)
    figs["reports_per_hour"] = fig

    fig, ax = plt.subplots(figsize=(9, 3.6))
    srcs = s.top_sources(top)[::-1]
    ax.barh([a for a, _ in srcs], [v.reports for _, v in srcs], label="reports")
    ax.barh([a for a, _ in srcs], [v.blocks for _, v in srcs], label="blocks", height=0.4)
    ax.tick_params(axis="y", labelsize=7)
    if srcs:
        ax.legend(fontsize=7)
    figs["top_sources"] = fig

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ports = s.ports.most_common(top)
    ax.bar([_port_label(p) for p, _ in ports], [n for _, n in ports], color="tab:orange")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_ylabel("reports")
    figs["ports"] = fig

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(x, [sum(s.blocks_hour.get(h, 0) for h in b) for _, b in bins], color="tab:red")
    _time_axis(ax, bins)
    ax.set_ylabel("blocks")
    figs["blocks_per_hour"] = fig

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ttb = s.time_to_block()
    if ttb:
        ax.hist(ttb, bins=min(30, max(5, len(ttb))), color="tab:green")
    ax.set_xlabel("seconds")
    ax.set_ylabel("sources")
    figs["time_to_block"] = fig

    for name, fig in figs.items():
        fig.axes[0].set_title(TITLES[name], fontsize=10)
        if not fig.axes[0].has_data():
            fig.axes[0].text(0.5, 0.5, "no data in this period", ha="center", va="center",
                             transform=fig.axes[0].transAxes, color="grey")
        fig.tight_layout()
    return figs


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _write(path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as err:
        raise StateError(f"{path}: cannot write: {err.strerror}") from err
    return path


def write_pngs(s, directory):
    """One PNG per chart in directory; returns the paths."""
    plt = _pyplot()
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise StateError(f"{directory}: cannot make the directory: {err.strerror}") from err
    paths = []
    for name, fig in figures(s).items():
        paths.append(_write(os.path.join(directory, f"{name}.png"), _png(fig)))
        plt.close(fig)
    return paths


def write_html(s, path, top=15):
    """The self-contained page (see html_page) written to path; returns path."""
    return _write(path, html_page(s, top).encode())


def html_page(s, top=15):
    """The whole report as one HTML document (images inlined as data: URIs)."""
    plt = _pyplot()
    esc = html.escape
    when = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t))  # noqa: E731
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>scanwatch report</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
             "td:first-child{text-align:left}</style></head><body>",
             f"<h1>scanwatch report</h1><p>{esc(when(s.since))} to {esc(when(s.until))}</p>",
             "<table id='totals'><tr><th>reports</th><th>blocks</th><th>sources</th></tr>",
             f"<tr><td id='reports'>{s.reports}</td><td id='blocks'>{s.blocks}</td>"
             f"<td id='sources'>{len(s.sources)}</td></tr></table>"]
    for name, fig in figures(s, top).items():
        data = base64.b64encode(_png(fig)).decode()
        plt.close(fig)
        parts.append(f"<h2>{esc(TITLES[name])}</h2><img id='{name}' alt='{esc(TITLES[name])}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("<h2>Top sources</h2><table id='top-sources'><tr><th>source</th>"
                 "<th>reports</th><th>blocks</th><th>evidence</th></tr>")
    for addr, src in s.top_sources(top):
        ev = ", ".join(f"{k} {n}" for k, n in src.evidence.most_common(3))
        parts.append(f"<tr><td>{esc(addr)}</td><td>{src.reports}</td><td>{src.blocks}</td>"
                     f"<td>{esc(ev)}</td></tr>")
    parts.append("</table><h2>Ports</h2><table id='ports-table'><tr><th>port</th>"
                 "<th>reports</th><th>service</th></tr>")
    for port, n in s.ports.most_common(top):
        parts.append(f"<tr><td>{esc(port)}</td><td>{n}</td>"
                     f"<td>{esc(service_name(port))}</td></tr>")
    parts.append("</table></body></html>\n")
    return "".join(parts)
