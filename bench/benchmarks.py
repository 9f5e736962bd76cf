#!/usr/bin/env python3
"""bench/benchmarks.py: assembles BENCHMARKS.md at the repository root from benchmark outputs in bench/out
(which is not committed): the full run's report (bench/run.sh), its raw runs, and the scaling run
(bench/scaling.sh). The charts are copied (or rendered from the TSVs) into docs/bench/, so that BENCHMARKS.md
has them in the repository. Python 3 standard library only.

  bench/benchmarks.py                      newest full report (with writes) of the largest scale + newest scaling
  bench/benchmarks.py --report bench/out/report-<date>.md --scaling bench/out/scaling-<date>.tsv
Options: --out FILE (BENCHMARKS.md)  --svg-dir DIR (docs/bench)
         --notes FILE (bench/benchmarks-notes.md if present: hand-written remarks, included as "Notes")
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CHART = os.path.join(HERE, "chart.py")


def sections(md):
    """Markdown report -> (title, header bullet lines, {section title: body lines})."""
    lines = md.splitlines()
    title = lines[0].lstrip("# ").strip() if lines else ""
    head, secs, cur = [], {}, None
    for line in lines[1:]:
        if line.startswith("## "):
            cur = line[3:].strip()
            secs[cur] = []
        elif cur is None:
            head.append(line)
        else:
            secs[cur].append(line)
    for k in secs:
        while secs[k] and not secs[k][-1].strip():
            secs[k].pop()
        while secs[k] and not secs[k][0].strip():
            secs[k].pop(0)
    return title, [h for h in head if h.strip()], secs


def table_rows(body):
    return [[c.strip() for c in l.strip().strip("|").split("|")] for l in body if l.startswith("|")]


def scale_of(path):
    m = re.search(r"^- scale: (\d+) sites", open(path).read(), re.M)
    return int(m.group(1)) if m else 0


def pick_report():
    full = [p for p in glob.glob(os.path.join(HERE, "out", "report-*.md")) if "## Writes" in open(p).read()]
    if not full:
        sys.exit("benchmarks.py: no full report (with writes) in bench/out; run bench/run.sh or pass --report")
    return max(full, key=lambda p: (scale_of(p), os.path.basename(p)))


def pick_scaling():
    s = sorted(glob.glob(os.path.join(HERE, "out", "scaling-*.tsv")))
    return s[-1] if s else None


def num(s):
    m = re.match(r"\s*([0-9.]+)", s or "")
    return float(m.group(1)) if m else None


def margin(ratio, goal, result, measured=""):
    """How far a ratio is from its goal, in words (PASS and MISS only: no verdict, no margin)."""
    if result not in ("PASS", "MISS"):
        return ""
    if goal.strip() == "0 deadlocks":  # a count, not a ratio: the baseline column has none's count
        return "" if result == "PASS" else f"{measured} deadlock failures"
    r, g = num(ratio), num(goal.split()[-1] if goal else "")
    if r is None or g is None:
        return ""
    ge = goal.strip().startswith(">=")
    if result == "PASS":
        return f"{r / g:.2f}x the goal" if ge else f"{(1 - r / g) * 100:.0f}% under the limit"
    if ge:
        return f"short by {pct((1 - r / g) * 100)} ({r:.2f}x of {g:g}x; needs {g / r:.2f}x more)"
    return f"over by {pct((r / g - 1) * 100)} ({r:.2f}x against {g:g}x)"


def pct(p):
    """A shortfall in percent; the report rounds ratios to 2 decimals, so a MISS can show a ratio equal to its goal."""
    return f"{p:.0f}%" if p >= 0.5 else "less than 1%"


def copy_or_render(results_tsv, stamp, svg_dir, title):
    """The run's charts: bench/out/chart-<stamp>-*.svg if run.sh made them, otherwise rendered now."""
    out = {}
    for kind in ("reads", "shapes", "writes"):
        src = os.path.join(os.path.dirname(results_tsv), f"chart-{stamp}-{kind}.svg")
        if os.path.exists(src):
            out[kind] = src
    if "reads" not in out or "writes" not in out:
        tmp = os.path.join(svg_dir, ".render")
        os.makedirs(tmp, exist_ok=True)
        subprocess.run([sys.executable, CHART, "run", results_tsv, "--out-prefix", os.path.join(tmp, "c"),
                        "--title", title], check=True, stdout=subprocess.DEVNULL)
        for kind in ("reads", "shapes", "writes"):
            p = os.path.join(tmp, f"c-{kind}.svg")
            if os.path.exists(p) and kind not in out:
                out[kind] = p
    copied = {}
    for kind, src in out.items():
        dst = os.path.join(svg_dir, f"{kind}.svg")
        shutil.copyfile(src, dst)
        copied[kind] = dst
    shutil.rmtree(os.path.join(svg_dir, ".render"), ignore_errors=True)
    return copied


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", help="the full run's report-<date>.md (default: newest full report, largest scale)")
    ap.add_argument("--scaling", help="scaling-<date>.tsv of bench/scaling.sh (default: newest in bench/out)")
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--svg-dir", default=os.path.join(REPO, "docs", "bench"))
    ap.add_argument("--notes", default=os.path.join(HERE, "benchmarks-notes.md"))
    a = ap.parse_args()

    report = a.report or pick_report()
    stamp = re.sub(r"^report-|\.md$", "", os.path.basename(report))
    results = os.path.join(os.path.dirname(report), f"results-{stamp}.tsv")
    scaling = a.scaling or pick_scaling()
    os.makedirs(a.svg_dir, exist_ok=True)
    outdir = os.path.dirname(os.path.abspath(a.out))
    rel = lambda p: os.path.relpath(p, outdir)

    title, head, secs = sections(open(report).read())
    sites = scale_of(report)
    charts = copy_or_render(results, stamp, a.svg_dir, f"{sites:,} sites") if os.path.exists(results) else {}

    # the seed-index query shapes: from the full report, else from the largest run of the scaling set
    shapes_body, shapes_src = secs.get("Other seed-index query shapes (median TPS / mean latency, 1 client)"), report
    scal_md = scal_body = None
    if scaling:
        scal_md = scaling[:-4] + ".md"
        scal_svg = scaling[:-4] + ".svg"
        if os.path.exists(scal_svg):
            shutil.copyfile(scal_svg, os.path.join(a.svg_dir, "scaling.svg"))
            charts["scaling"] = os.path.join(a.svg_dir, "scaling.svg")
        if os.path.exists(scal_md):
            scal_body = open(scal_md).read().splitlines()
        if not shapes_body:
            sdir = os.path.join(os.path.dirname(scaling), os.path.basename(scaling)[:-4])
            cands = sorted(glob.glob(os.path.join(sdir, "*", "report-*.md")), key=lambda p: (scale_of(p), p))
            for c in reversed(cands):
                _t, _h, s2 = sections(open(c).read())
                b = s2.get("Other seed-index query shapes (median TPS / mean latency, 1 client)")
                if b:
                    shapes_body, shapes_src = b, c
                    if "shapes" not in charts:
                        cst = re.sub(r"^report-|\.md$", "", os.path.basename(c))
                        src = os.path.join(os.path.dirname(c), f"chart-{cst}-shapes.svg")
                        if os.path.exists(src):
                            shutil.copyfile(src, os.path.join(a.svg_dir, "shapes.svg"))
                            charts["shapes"] = os.path.join(a.svg_dir, "shapes.svg")
                    break

    targets = table_rows(secs.get("Targets", []))
    # prose of the Targets section (below the full scale: which targets get no verdict there)
    targets_note = [l for l in secs.get("Targets", []) if l.strip() and not l.startswith("|")]
    o = []
    w = o.append
    w("# chom benchmarks")
    w("")
    w(f"Generated by `bench/benchmarks.py` from `bench/out/{os.path.basename(report)}` ({title.split(', ', 1)[-1]})"
      + (f" and `bench/out/{os.path.basename(scaling)}`" if scaling else "") + ". `bench/out` is not committed; "
      "the charts are copied to `docs/bench/`. How the benchmark works: `bench/README.md`.")
    w("")
    w("## Set-up")
    w("")
    for h in head:
        w(h)
    w("")
    if targets and len(targets) > 2:
        rows = targets[2:]
        npass = sum(1 for r in rows if "PASS" in r[-1])
        nmiss = sum(1 for r in rows if "MISS" in r[-1])
        nscale = sum(1 for r in rows if "1M only" in r[-1])
        w(f"## Targets at {sites:,} sites: {npass} PASS, {nmiss} MISS"
          + (f", {nscale} without a verdict at this scale" if nscale else ""))
        w("")
        for line in targets_note:
            w(line)
        if targets_note:
            w("")
        w("| target | baseline | chom | ratio | goal | result | margin |")
        w("|---|---:|---:|---:|---|---|---|")
        for r in rows:
            res = "PASS" if "PASS" in r[5] else "MISS" if "MISS" in r[5] else r[5].strip("*")
            w(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | **{res}** | {margin(r[3], r[4], res, r[2])} |")
        w("")
    for key, name, chart in (("Reads (median TPS / mean latency, 1 client)", "Reads", "reads"),
                             ("Writes (median TPS; bulk insert: median ms)", "Writes", "writes")):
        if key in secs:
            w(f"## {name} at {sites:,} sites" + (" (median TPS / mean latency, 1 client)" if chart == "reads"
                                                 else " (median TPS; bulk insert: median ms)"))
            w("")
            for line in secs[key]:
                if not line.startswith("!["):
                    w(line)
            if chart in charts:
                w("")
                w(f"![{name.lower()} at {sites:,} sites]({rel(charts[chart])})")
            w("")
    if shapes_body:
        src = os.path.relpath(shapes_src, HERE)
        w(f"## Other seed-index query shapes at {scale_of(shapes_src):,} sites")
        w("")
        if shapes_src != report:
            w(f"From the scaling run (`bench/{src}`, reads-only, shorter runs than the full run above).")
            w("")
        for line in shapes_body:
            if not line.startswith("!["):
                w(line)
        if "shapes" in charts:
            w("")
            w(f"![seed-index query shapes]({rel(charts['shapes'])})")
        w("")
    if scal_body:
        w("## Scaling: read latency against data size")
        w("")
        w("Mean latency in ms (median of the runs), 1 client. The biggest tenant has sites/200 sites, so its live")
        w("COUNT/SUM grows with the data, and withCount('sites') counts the sites of every eligible VPS; chom reads one")
        w("row in both cases. \"growth\" is the latency at the largest size over the smallest.")
        w("")
        for line in scal_body:
            if line.startswith("# ") or line.startswith("!["):
                continue
            w(re.sub(r"^(  - \S+ sites: )(scaling-)", r"\1bench/out/\2", line.rstrip()))
        if "scaling" in charts:
            w("")
            w(f"![read latency against data size]({rel(charts['scaling'])})")
        w("")
    if a.notes and os.path.exists(a.notes):
        notes = open(a.notes).read().strip().splitlines()
        if notes and notes[0].startswith("# "):
            notes = notes[1:]
        w("## Notes")
        w("")
        o.extend(notes)
        w("")
    if "Checks" in secs:
        w("## Checks")
        w("")
        o.extend(l.replace("Raw runs: results-", "Raw runs (not committed): bench/out/results-") for l in secs["Checks"])
        w("")
    w("## Reproduce")
    w("")
    w("```sh")
    w("sudo bench/run.sh                 # 1M sites, reads + writes: bench/out/report-<date>.md")
    w("sudo bench/scaling.sh             # reads at 10k, 100k, 1M sites: bench/out/scaling-<date>.{tsv,svg,md}")
    w("bench/benchmarks.py               # this file, from the newest of both; charts to docs/bench/")
    w("```")
    text = "\n".join(o).rstrip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    with open(a.out, "w") as f:
        f.write(text)
    print(a.out)
    for c in sorted(charts.values()):
        print(c)


if __name__ == "__main__":
    main()
