#!/usr/bin/env python3
"""bench/chart.py: SVG charts and median tables for chom's benchmark (Python 3 standard library only).

  chart.py run RESULTS.tsv --out-prefix PREFIX [--title TEXT]
      charts of one bench/run.sh run (results-<date>.tsv: phase, config, test, clients, run, tps, ms):
      PREFIX-reads.svg   read latency per test, before / seed / chom (log scale)
      PREFIX-shapes.svg  latency of the other seed-index query shapes (if the run has them)
      PREFIX-writes.svg  write cost: none / seed trigger / chom per write test, as throughput relative to
                         no trigger (bulk insert: inverse time), with the absolute medians and the targets
  chart.py collect --out SCALING.tsv SITES=RESULTS.tsv [SITES=RESULTS.tsv ...]
      medians per size of several runs into one long TSV: sites, phase, config, test, clients, runs, tps, lat_ms
  chart.py scaling SCALING.tsv --out FILE.svg [--title TEXT] [--md TABLE.md]
      latency (ms, log) against sites (log): live COUNT/SUM vs chom_tenant_stats(), withCount vs
      chom_pick_vps(), PK read and the site list, so O(n) reads rise and O(1) reads stay flat
"""
import argparse
import csv
import math
import statistics
import sys
from collections import OrderedDict, defaultdict
from xml.sax.saxutils import escape

COLORS = {"before": "#9e9e9e", "none": "#9e9e9e", "seed": "#e6862a", "chom": "#1f6fb4"}
LABELS = {"before": "before (base schema)", "none": "none (no trigger)", "seed": "seed (the app's 20 indexes)",
          "chom": "chom"}
WRITE_LABELS = {"none": "none (no trigger)", "seed": "seed (recount row trigger)", "chom": "chom (statement triggers)"}
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


# ------------------------------------------------------------------------------------------------ data
def read_results(path):
    """Raw runs of run.sh -> OrderedDict (phase, config, test, clients) -> {'tps': [...], 'lat': [...]}, in file order."""
    runs = OrderedDict()
    with open(path, newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 7 or not row[0]:
                continue
            phase, config, test, clients, _rep, tps, lat = row[:7]
            d = runs.setdefault((phase, config, test, int(clients)), {"tps": [], "lat": []})
            if tps.strip():
                d["tps"].append(float(tps))
            if lat.strip():
                d["lat"].append(float(lat))
    return runs


def medians(runs):
    out = OrderedDict()
    for key, d in runs.items():
        out[key] = {"runs": max(len(d["tps"]), len(d["lat"])),
                    "tps": statistics.median(d["tps"]) if d["tps"] else None,
                    "lat": statistics.median(d["lat"]) if d["lat"] else None}
    return out


def read_scaling(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows.append({"sites": int(r["sites"]), "phase": r["phase"], "config": r["config"], "test": r["test"],
                         "clients": int(r["clients"]), "runs": int(r["runs"]),
                         "tps": float(r["tps"]) if r["tps"] else None,
                         "lat": float(r["lat_ms"]) if r["lat_ms"] else None})
    return rows


# ------------------------------------------------------------------------------------------------ svg helpers
class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.parts = w, h, []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, anchor="start", color="#222", weight="normal", rotate=None):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" text-anchor="{anchor}" fill="{color}" '
                 f'font-weight="{weight}"{tr}>{escape(str(s))}</text>')

    def line(self, x1, y1, x2, y2, color="#ccc", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="{width}"{d}/>')

    def rect(self, x, y, w, h, color, title=None):
        t = f"<title>{escape(title)}</title>" if title else ""
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{color}">{t}</rect>')

    def render(self):
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}">\n<rect width="100%" height="100%" fill="white"/>\n'
                + "\n".join(self.parts) + "\n</svg>\n")


def log_ticks(lo, hi):
    """Decade ticks (major) and 2/5 ticks (minor) covering [lo, hi]."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    major = [10.0 ** e for e in range(a, b + 1)]
    minor = [m * 10.0 ** e for e in range(a, b) for m in (2, 5)]
    return major, minor


def fmt_num(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_tick(v):
    if v >= 1000000:
        return f"{v / 1e6:g}M"
    if v >= 1000:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def legend_row(svg, x, y, items):
    """Horizontal legend: items = (label, color) boxes, or (label, color, 'line') dashed red marks."""
    for item in items:
        label, color = item[0], item[1]
        if len(item) > 2:
            svg.line(x, y - 4, x + 14, y - 4, color, 2, "3,2")
        else:
            svg.rect(x, y - 10, 12, 12, color)
        svg.text(x + 18, y, label, 11)
        x += 18 + 6.3 * len(label) + 18


# ------------------------------------------------------------------------------------------------ charts
def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def grouped_log_bars(title, subtitle, groups, configs, values, path):
    """groups: list of group labels; values[(group, config)] = latency ms (None: not measured)."""
    vals = [v for v in values.values() if v]
    if not vals:
        return False
    lo, hi = min(vals) / 1.5, max(vals) * 3
    major, minor = log_ticks(lo, hi)
    lo, hi = major[0], major[-1]
    W = max(720, 110 + len(groups) * (len(configs) * 22 + 34))
    H, L, T, B = 440, 70, 60, 120
    R = W - 20
    svg = Svg(W, H)
    svg.text(L, 24, title, 16, weight="bold")
    svg.text(L, 42, subtitle, 12, color="#555")
    ph = H - T - B

    def y(v):
        return T + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    for v in minor:
        if lo <= v <= hi:
            svg.line(L, y(v), R, y(v), "#eee")
    for v in major:
        svg.line(L, y(v), R, y(v), "#ccc")
        svg.text(L - 6, y(v) + 4, fmt_tick(v), 11, "end", "#555")
    svg.text(18, T + ph / 2, "mean latency, ms (log scale)", 12, "middle", "#333", rotate=-90)
    gw = (R - L) / len(groups)
    bw = min(22, (gw - 20) / len(configs))
    for gi, g in enumerate(groups):
        gx = L + gi * gw + (gw - bw * len(configs)) / 2
        for ci, c in enumerate(configs):
            v = values.get((g, c))
            if not v:
                continue
            x = gx + ci * bw
            svg.rect(x + 1, y(v), bw - 2, T + ph - y(v), COLORS[c], f"{g}, {c}: {fmt_num(v)} ms")
            svg.text(x + bw / 2 + 3, y(v) - 4, fmt_num(v), 9, "start", "#333", rotate=-90)
        cx = L + gi * gw + gw / 2
        words, lines, cur = g.split(), [], ""
        for w in words:
            if len(cur) + len(w) + 1 > 16 and cur:
                lines.append(cur)
                cur = w
            else:
                cur = (cur + " " + w).strip()
        lines.append(cur)
        for li, s in enumerate(lines[:4]):
            svg.text(cx, T + ph + 16 + li * 13, s, 11, "middle")
    svg.line(L, T + ph, R, T + ph, "#333")
    legend_row(svg, L, H - 14, [(LABELS[c], COLORS[c]) for c in configs])
    with open(path, "w") as f:
        f.write(svg.render())
    return True


def chart_run(args):
    med = medians(read_results(args.results))
    prefix, title = args.out_prefix, args.title
    made = []
    for phase, name, t in (("read", "reads", "reads"), ("shape", "shapes", "other seed-index query shapes")):
        groups = list(OrderedDict.fromkeys(k[2] for k in med if k[0] == phase))
        if not groups:
            continue
        values = {(k[2], k[1]): v["lat"] for k, v in med.items() if k[0] == phase}
        runs = max(v["runs"] for k, v in med.items() if k[0] == phase)
        if grouped_log_bars(f"chom benchmark: {t}" + (f", {title}" if title else ""),
                            f"pgbench -M prepared, 1 client; median of {plural(runs, 'run')}; lower is better",
                            groups, ["before", "seed", "chom"], values, f"{prefix}-{name}.svg"):
            made.append(f"{prefix}-{name}.svg")
    if any(k[0] == "write" for k in med):
        chart_writes(med, f"{prefix}-writes.svg", title)
        made.append(f"{prefix}-writes.svg")
    for m in made:
        print(m)


def write_goal(test):
    """chom's throughput target against no trigger for a write test (bench/sql/report.sql, write_tests)."""
    if test.startswith("3-tenant tx"):
        return 0.75
    if test.startswith("20-update tx") or test.startswith("single"):
        return 0.85
    if test.startswith("insert"):
        return 0.80
    return 0.70


def chart_writes(med, path, title):
    tests = list(OrderedDict.fromkeys((k[2], k[3]) for k in med if k[0] == "write"))
    configs = ["none", "seed", "chom"]
    groups = []
    for test, clients in tests:
        v = {c: med.get(("write", c, test, clients)) for c in configs}
        bulk = test.startswith("bulk")
        unit = "ms" if bulk else "tps"
        absval = {c: (v[c]["lat"] if bulk else v[c]["tps"]) if v[c] else None for c in configs}
        base = absval["none"]
        rel = {}
        for c in configs:
            a = absval[c]
            rel[c] = None if not a or not base else (base / a if bulk else a / base)
        goals = [(1 / 1.05 if bulk else write_goal(test), "target vs none")]
        if test.startswith("insert, biggest") and absval["seed"] and base:
            goals.append((3.0 * rel["seed"], "target 3x seed"))
        label = test if bulk else f"{test}, {clients} client{'s' if clients > 1 else ''}"
        groups.append((label, unit, absval, rel, goals))
    top = max([1.2] + [r for g in groups for r in g[3].values() if r] + [gl[0] for g in groups for gl in g[4]]) * 1.12
    W, H, L, T, B = max(760, 120 + len(groups) * 130), 450, 70, 60, 110
    R = W - 20
    ph = H - T - B
    svg = Svg(W, H)
    svg.text(L, 24, "chom benchmark: write cost" + (f", {title}" if title else ""), 16, weight="bold")
    svg.text(L, 42, "throughput relative to no trigger (bulk insert: inverse of its time); labels: median tps or ms; "
                    "higher is better", 12, color="#555")

    def y(v):
        return T + ph * (1 - v / top)

    step = 0.25 if top <= 2.5 else 0.5 if top <= 5 else 1.0
    v = 0.0
    while v <= top + 1e-9:
        svg.line(L, y(v), R, y(v), "#ddd" if v != 1.0 else "#999", dash=None if v != 1.0 else "4,3")
        svg.text(L - 6, y(v) + 4, f"{v:g}x", 11, "end", "#555")
        v += step
    svg.text(18, T + ph / 2, "throughput / no trigger", 12, "middle", "#333", rotate=-90)
    gw = (R - L) / len(groups)
    bw = min(30, (gw - 24) / 3)
    for gi, (label, unit, absval, rel, goals) in enumerate(groups):
        gx = L + gi * gw + (gw - 3 * bw) / 2
        for ci, c in enumerate(configs):
            r = rel[c]
            if r is None:
                continue
            x = gx + ci * bw
            svg.rect(x + 2, y(r), bw - 4, T + ph - y(r), COLORS[c], f"{label}, {c}: {fmt_num(absval[c])} {unit} ({r:.2f}x)")
            svg.text(x + bw / 2, y(r) - 4, f"{r:.2f}x", 9, "middle", "#333")
            lab = f"{fmt_num(absval[c])} {unit}"
            if T + ph - y(r) > 6.5 * len(lab) + 8:  # inside the bar
                svg.text(x + bw / 2 + 3, T + ph - 4, lab, 9, "start", "white", rotate=-90)
            else:  # above the ratio
                svg.text(x + bw / 2 + 3, y(r) - 16, lab, 9, "start", "#333", rotate=-90)
        cx = gx + 2 * bw + bw / 2
        for g, _name in goals:
            svg.line(cx - bw / 2 - 3, y(g), cx + bw / 2 + 3, y(g), "#c62828", 2, "3,2")
        mid = L + gi * gw + gw / 2
        words = label.replace(",", ",|").split("|")
        for li, s in enumerate(words[:3]):
            svg.text(mid, T + ph + 16 + li * 13, s.strip(), 11, "middle")
    svg.line(L, T + ph, R, T + ph, "#333")
    legend_row(svg, L, H - 30, [(WRITE_LABELS[c], COLORS[c]) for c in configs])
    legend_row(svg, L, H - 12, [("chom target against no trigger: single-row mix and 20-update tx >= 0.85x, inserts "
                                 ">= 0.80x, 3-tenant tx >= 0.75x, bulk insert <= 1.05x its time; inserts into the biggest "
                                 "tenant also >= 3x seed", "#c62828", "line")])
    with open(path, "w") as f:
        f.write(svg.render())


SERIES = [  # label, phase, config, test, color, dash
    ("tenant stats, biggest tenant: live COUNT/SUM (seed)", "read", "seed", "tenant stats, biggest", "#e6862a", None),
    ("tenant stats, biggest tenant: chom_tenant_stats()", "read", "chom", "tenant stats, biggest", "#1f6fb4", None),
    ("pick VPS: withCount('sites') (seed)", "read", "seed", "pick vps", "#c62828", None),
    ("pick VPS: chom_pick_vps()", "read", "chom", "pick vps", "#2e7d32", None),
    ("PK read of a tenant (chom)", "read", "chom", "pk read, random", "#555555", "5,4"),
    ("list a tenant's 20 newest sites (chom)", "read", "chom", "list sites, random", "#8e24aa", "2,3"),
]


def chart_scaling(args):
    rows = read_scaling(args.scaling)
    idx = {(r["phase"], r["config"], r["test"], r["sites"]): r for r in rows}
    sizes = sorted({r["sites"] for r in rows})
    series = []
    for label, phase, config, test, color, dash in SERIES:
        pts = [(s, idx[(phase, config, test, s)]["lat"]) for s in sizes
               if (phase, config, test, s) in idx and idx[(phase, config, test, s)]["lat"]]
        if pts:
            series.append((label, color, dash, pts))
    if not series:
        sys.exit("chart.py scaling: no matching rows")
    lats = [p[1] for s in series for p in s[3]]
    ymaj, ymin = log_ticks(min(lats) / 1.3, max(lats) * 1.3)
    xlo, xhi = 10 ** math.floor(math.log10(min(sizes))), 10 ** math.ceil(math.log10(max(sizes)))
    if xhi == xlo:
        xhi *= 10
    xmaj, xmin = log_ticks(xlo, xhi)
    W, H, L, T, B, R = 860, 500, 70, 60, 60, 560
    svg = Svg(W, H)
    svg.text(L, 24, "chom benchmark: read latency against data size" + (f", {args.title}" if args.title else ""),
             16, weight="bold")
    svg.text(L, 42, "pgbench -M prepared, 1 client, median per size; both axes log scale; the biggest tenant has "
                    "sites/200 sites", 12, color="#555")
    ph, pw = H - T - B, R - L
    ylo, yhi = ymaj[0], ymaj[-1]

    def X(v):
        return L + pw * (math.log10(v) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo))

    def Y(v):
        return T + ph * (1 - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))

    for v in ymin:
        if ylo <= v <= yhi:
            svg.line(L, Y(v), R, Y(v), "#eee")
    for v in ymaj:
        svg.line(L, Y(v), R, Y(v), "#ccc")
        svg.text(L - 6, Y(v) + 4, fmt_tick(v), 11, "end", "#555")
    for v in xmin:
        svg.line(X(v), T, X(v), T + ph, "#eee")
    for v in xmaj:
        svg.line(X(v), T, X(v), T + ph, "#ccc")
        svg.text(X(v), T + ph + 16, fmt_tick(v), 11, "middle", "#555")
    svg.line(L, T + ph, R, T + ph, "#333")
    svg.line(L, T, L, T + ph, "#333")
    svg.text(L + pw / 2, H - 18, "sites (log scale)", 12, "middle")
    svg.text(18, T + ph / 2, "mean latency, ms (log scale)", 12, "middle", rotate=-90)
    for label, color, dash, pts in series:
        d = " ".join(f"{'M' if i == 0 else 'L'}{X(s):.1f},{Y(v):.1f}" for i, (s, v) in enumerate(pts))
        da = f' stroke-dasharray="{dash}"' if dash else ""
        svg.add(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2.2"{da}/>')
        for s, v in pts:
            svg.add(f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="3.5" fill="{color}"><title>{escape(label)}: '
                    f'{s} sites, {fmt_num(v)} ms</title></circle>')
    ends = sorted(((Y(pts[-1][1]), X(pts[-1][0]), pts[-1][1], color) for _l, color, _d, pts in series))
    prev = -1e9
    for yy, xx, v, color in ends:  # end labels, nudged apart
        yy = max(yy, prev + 12)
        prev = yy
        svg.text(xx + 7, yy + 4, f"{fmt_num(v)} ms", 10, "start", color)
    ly = T + 6
    for label, color, dash, pts in series:
        da = f' stroke-dasharray="{dash}"' if dash else ""
        svg.add(f'<line x1="{R + 70}" y1="{ly:.1f}" x2="{R + 94}" y2="{ly:.1f}" stroke="{color}" stroke-width="2.2"{da}/>')
        words, lines, cur = label.split(), [], ""
        for w in words:
            if len(cur) + len(w) + 1 > 30 and cur:
                lines.append(cur)
                cur = w
            else:
                cur = (cur + " " + w).strip()
        lines.append(cur)
        for i, s in enumerate(lines):
            svg.text(R + 100, ly + 4 + i * 14, s, 11)
        ly += 14 * len(lines) + 12
    with open(args.out, "w") as f:
        f.write(svg.render())
    print(args.out)
    if args.md:
        with open(args.md, "w") as f:
            f.write(scaling_md(idx, sizes))


def scaling_md(idx, sizes):
    """Markdown table: mean latency (ms) per size, the chom speed-ups, and the growth from the smallest size."""
    def lat(config, test, s):
        r = idx.get(("read", config, test, s))
        return r["lat"] if r else None

    cols = [("PK read (chom phase)", "chom", "pk read, random"),
            ("tenant stats, biggest: live COUNT/SUM (seed)", "seed", "tenant stats, biggest"),
            ("chom_tenant_stats()", "chom", "tenant stats, biggest"),
            ("pick VPS: withCount (seed)", "seed", "pick vps"),
            ("chom_pick_vps()", "chom", "pick vps"),
            ("list sites (chom)", "chom", "list sites, random")]
    head = ["sites", "biggest tenant"] + [c[0] + ", ms" for c in cols] + ["stats: live / chom", "pick: withCount / chom"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]

    def ratio(a, b):
        return f"{a / b:.1f}x" if a and b else "-"

    for s in sizes:
        v = [lat(c[1], c[2], s) for c in cols]
        lines.append("| " + " | ".join([f"{s:,}", f"{s // 200:,}"] + [fmt_num(x) for x in v]
                                        + [ratio(v[1], v[2]), ratio(v[3], v[4])]) + " |")
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        g = [ratio(lat(c[1], c[2], b), lat(c[1], c[2], a)) for c in cols]
        lines.append("| " + " | ".join([f"growth {fmt_tick(a)} to {fmt_tick(b)}", f"{b / a:g}x"] + g + ["", ""]) + " |")
    return "\n".join(lines) + "\n"


def collect(args):
    out = []
    for spec in args.runs:
        sites, _, path = spec.partition("=")
        for (phase, config, test, clients), m in medians(read_results(path)).items():
            out.append([int(sites), phase, config, test, clients, m["runs"],
                        "" if m["tps"] is None else f"{m['tps']:.3f}", "" if m["lat"] is None else f"{m['lat']:.4f}"])
    out.sort(key=lambda r: r[0])
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["sites", "phase", "config", "test", "clients", "runs", "tps", "lat_ms"])
        w.writerows(out)
    print(args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("results")
    p.add_argument("--out-prefix", required=True)
    p.add_argument("--title", default="")
    p.set_defaults(fn=chart_run)
    p = sub.add_parser("collect")
    p.add_argument("--out", required=True)
    p.add_argument("runs", nargs="+", metavar="SITES=RESULTS.tsv")
    p.set_defaults(fn=collect)
    p = sub.add_parser("scaling")
    p.add_argument("scaling")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--md", help="also write a markdown table of the medians to this file")
    p.set_defaults(fn=chart_scaling)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
