#!/usr/bin/env bash
# bench/scaling.sh: the read measurements of bench/run.sh at several data sizes, to show which reads grow with the
# data (live COUNT/SUM of the biggest tenant, which has sites/200 sites; withCount('sites') over every VPS) and which
# do not (PK read, chom_tenant_stats(), chom_pick_vps(), the site list). One bench/run.sh --reads-only per size,
# each on its own throwaway server and dataset; the medians of all sizes go into one TSV, a chart and a table:
#   bench/out/scaling-<date>.tsv   sites, phase, config, test, clients, runs, tps, lat_ms (medians)
#   bench/out/scaling-<date>.svg   latency against sites, both log scale
#   bench/out/scaling-<date>.md    the table, with the run reports it came from
#
#   bench/scaling.sh                               10k, 100k and 1M sites (the 1M load takes a few minutes)
#   bench/scaling.sh --sizes 10000,100000 --reuse 1000000=bench/out/results-<date>.tsv
#                                                  measure two sizes, take the third from an earlier run.sh TSV
# Options: --sizes N,N,...  --runs R (3)  --read-secs S (3)  --no-shapes  --port P  --out DIR (bench/out)
#          --reuse SITES=RESULTS.tsv (repeatable)  --build (let run.sh build and install chom first; default --no-build)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SIZES=10000,100000,1000000 RUNS=3 READ_T=3 OUT=$HERE/out PORT=5544 BUILD=--no-build
EXTRA=() REUSE=()
while (($#)); do
  case $1 in
    --sizes) SIZES=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --read-secs) READ_T=$2; shift ;;
    --no-shapes) EXTRA+=(--no-shapes) ;;
    --port) PORT=$2; shift ;;
    --out) OUT=$2; shift ;;
    --reuse) REUSE+=("$2"); shift ;;
    --build) BUILD="" ;;
    -h|--help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      cat <<'USAGE'

Starts, per size, bench/run.sh --reads-only: its own throwaway Postgres 15 as chomtest, data and unix socket in
/tmp/chom-bench.XXXXXX, port --port (5544) on that socket only, no TCP listener, stopped and removed after.
Installs nothing unless --build (then run.sh builds chom in release mode and installs it into the system's
Postgres 15 directories, /usr/lib/postgresql/15/lib and /usr/share/postgresql/15/extension).
Time on 2 cores: about 35 minutes for 10k, 100k and 1M sites (the 1M load most of it).
USAGE
      exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(date +%Y%m%d-%H%M%S)
T0=$(date +%s)
say() { printf '[scaling %5ds] %s\n' $(($(date +%s) - T0)) "$*"; }

SPECS=() REPORTS=()
for spec in "${REUSE[@]}"; do
  [ -f "${spec#*=}" ] || { echo "--reuse: no such file ${spec#*=}" >&2; exit 2; }
  SPECS+=("$spec")
  REPORTS+=("${spec%%=*} sites: reused $(basename "${spec#*=}") ($(basename "$(dirname "${spec#*=}")")/$(basename "${spec#*=}" .tsv | sed 's/^results-/report-/').md)")
done
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for n in "${SIZE_LIST[@]}"; do
  dir=$OUT/scaling-$STAMP/$n
  mkdir -p "$dir"
  say "$n sites: bench/run.sh $BUILD --reads-only --sites $n --runs $RUNS --read-secs $READ_T ${EXTRA[*]} (log $dir/run.log)"
  bash "$HERE/run.sh" $BUILD --reads-only --sites "$n" --runs "$RUNS" --read-secs "$READ_T" --port "$PORT" \
    "${EXTRA[@]}" --out "$dir" >"$dir/run.log" 2>&1 || { tail -30 "$dir/run.log"; say "run.sh failed at $n sites"; exit 1; }
  # shellcheck disable=SC2012 # run.sh's own file names (results-<date>-<time>.tsv): ls -t picks the newest
  res=$(ls -t "$dir"/results-*.tsv | head -1)
  # shellcheck disable=SC2012 # likewise report-<date>-<time>.md
  rep=$(ls -t "$dir"/report-*.md | head -1)
  SPECS+=("$n=$res")
  REPORTS+=("$n sites: scaling-$STAMP/$n/$(basename "$rep")")
  say "$n sites: done ($(basename "$rep"))"
  BUILD=--no-build
done

TSV=$OUT/scaling-$STAMP.tsv SVG=$OUT/scaling-$STAMP.svg MD=$OUT/scaling-$STAMP.md
python3 "$HERE/chart.py" collect --out "$TSV" "${SPECS[@]}" >/dev/null
python3 "$HERE/chart.py" scaling "$TSV" --out "$SVG" --md "$MD.table" >/dev/null
{
  echo "# chom benchmark: scaling, $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "- command: bench/scaling.sh --sizes $SIZES --runs $RUNS --read-secs $READ_T ${EXTRA[*]} ${REUSE[*]/#/--reuse }"
  echo "- $(nproc) vCPU, load average at the end $(cut -d' ' -f1-3 /proc/loadavg); total time $(($(date +%s) - T0))s"
  echo "- runs:"
  for r in "${REPORTS[@]}"; do echo "  - $r"; done
  echo
  cat "$MD.table"
  echo
  echo "![read latency against data size]($(basename "$SVG"))"
} >"$MD"
rm -f "$MD.table"
cat "$MD"
say "scaling: $TSV, $SVG, $MD"
