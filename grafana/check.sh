#!/usr/bin/env bash
# Checks the Grafana dashboard against Prometheus and against the metrics the server exports.
#
#   grafana/check.sh                     # (a) every PromQL expr parses, (b) every metric name is in names.rs
#   grafana/check.sh metrics.txt         # ... and (c) promtool check metrics on a saved /metrics text
#   grafana/check.sh http://localhost:8080/metrics   # ... or on a running server
#
# Needs python3 and promtool (Debian: apt-get install prometheus).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dashboard="$here/dashboards/mlx-serve.json"
names_rs="$here/../actors/src/metrics/names.rs"
command -v promtool >/dev/null || { echo "promtool not found (apt-get install prometheus)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0

# The committed JSON must be what the generator writes, or edits to one were lost in the other.
python3 -c "
import json, sys
sys.path.insert(0, '$here')
import build_dashboard
print(json.dumps(build_dashboard.build(), indent=2))" > "$tmp/generated.json"
if ! diff -q "$tmp/generated.json" "$dashboard" >/dev/null; then
  echo "FAIL: $dashboard is stale; run grafana/build_dashboard.py" >&2
  fail=1
fi

# (a) promtool has no "parse this expression" command, but it parses every rule in a rules file.
# Grafana's variables are not PromQL, so they are replaced by values of the right shape first.
python3 - "$dashboard" "$tmp/exprs.txt" "$tmp/rules.yml" <<'PY'
import json, sys
dash, exprs_out, rules_out = sys.argv[1:4]
exprs = []
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                exprs.append(x)
            else:
                walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(json.load(open(dash)))
subst = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
         ("${model}", ".*"), ("$model", ".*")]
rules = []
for i, e in enumerate(exprs):
    for a, b in subst:
        e = e.replace(a, b)
    rules.append({"record": f"dashboard:expr_{i}", "expr": e})
open(exprs_out, "w").write("\n".join(exprs) + "\n")
# JSON is valid YAML, and sidesteps quoting the braces and quotes in PromQL.
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(rules_out, "w"), indent=1)
print(f"{len(rules)} PromQL expressions found")
PY
if promtool check rules "$tmp/rules.yml" >"$tmp/rules.out" 2>&1; then
  echo "ok: every dashboard expression parses"
else
  cat "$tmp/rules.out" >&2
  echo "FAIL: promtool rejected a dashboard expression" >&2
  fail=1
fi

# (b) every mlx_serve_* name in the dashboard (histogram series suffixes stripped) is in names.rs.
grep -o '"mlx_serve_[a-z0-9_]*"' "$names_rs" | tr -d '"' | sort -u > "$tmp/defined.txt"
grep -o 'mlx_serve_[a-z0-9_]*[a-z0-9]' "$dashboard" | sort -u > "$tmp/used.txt"
while read -r name; do
  base="$name"
  for suffix in _bucket _sum _count; do
    stripped="${name%"$suffix"}"
    if [ "$stripped" != "$name" ] && grep -qx "$stripped" "$tmp/defined.txt"; then base="$stripped"; fi
  done
  if ! grep -qx "$base" "$tmp/defined.txt"; then
    echo "FAIL: dashboard uses $name, which names.rs does not define" >&2
    fail=1
  fi
done < "$tmp/used.txt"
[ "$fail" = 0 ] && echo "ok: $(wc -l < "$tmp/used.txt") metric names, all defined in names.rs"

# (c) lint a real exposition.
if [ $# -ge 1 ]; then
  case "$1" in
    http://*|https://*) python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" "$1" > "$tmp/metrics.txt" ;;
    *) cp "$1" "$tmp/metrics.txt" ;;
  esac
  if promtool check metrics < "$tmp/metrics.txt"; then
    echo "ok: promtool check metrics is clean"
  else
    echo "FAIL: promtool check metrics" >&2
    fail=1
  fi
fi

exit "$fail"
