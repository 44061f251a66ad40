#!/usr/bin/env bash
# End-to-end benchmark in the veth lab: the kernel's NAT (nftables snat + conntrack) and
# tracenat, side by side, on the same lab with the same generator, in one run.
#
#   scripts/bench-e2e.sh [--workers N] [--duration 3s] [--rate 50k] [--new-flows 1M]
#                        [--new-duration 1s] [--out DIR] [--spin]
#
# Root. Builds tracenat (release) if needed, brings the lab up in DIR/lab (`tracenat lab
# up --dir`), and always takes it down again (trap EXIT). For each system:
#   1. forwarded pps at max rate: `gen send --rate max` in tn-access on tn-in-peer ->
#      `gen sink` in tn-inet on tn-out-peer (one way, 16 subscribers x 4 flows, 64 B UDP);
#   2. loss and round-trip latency at a fixed offered rate (--rate): sink --reflect,
#      send --expect-replies --hist-out (HdrHistogram interval log);
#   3. new sessions per second: send --rate max --new-flows-per-sec (--new-flows) from
#      1024 subscribers for --new-duration; sessions counted by the NAT itself (kernel:
#      nf_conntrack_count in tn-nat, sampled every 50 ms; tracenat: its
#      sessions_created counter from `tracenat stats`);
#   4. memory per session: kernel: the nf_conntrack slab object size (/proc/slabinfo) and
#      the growth of Slab in /proc/meminfo over phase 3 divided by the sessions created;
#      tracenat: the growth of its VmRSS over phase 3 divided by the sessions created.
# Writes DIR/results.md (the table, with tracenat/kernel ratios), DIR/results.json, the
# HdrHistogram logs DIR/rtt-{kernel,tracenat}.hlog (and one-way DIR/oneway-*.hlog), the
# generator's JSON reports, and the plot DIR/latency.svg (scripts/plot-latency.py).
#
# (a) the kernel: ip_forward=1 in tn-nat and
#       table ip tnbench { chain postrouting { type nat hook postrouting priority srcnat;
#         oifname "tn-out" ip saddr 100.64.0.0/10 snat to 203.0.113.1-203.0.113.254 } }
#     no XDP program on tn-in/tn-out; conntrack does the rest.
# (b) tracenat: `tracenat run --config DIR/lab/tracenat.toml` in tn-nat, ip_forward=0.
set -euo pipefail

WORKERS=1
DURATION=3s
RATE=50k
NEW_FLOWS=1M
NEW_DURATION=1s
OUT=
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while (($#)); do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --new-flows) NEW_FLOWS=$2; shift 2 ;;
    --new-duration) NEW_DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --spin) SPIN=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench-e2e: unknown argument $1" >&2; usage ;;
  esac
done
[[ $WORKERS =~ ^[0-9]+$ && $WORKERS -ge 1 ]] || { echo "bench-e2e: --workers N" >&2; exit 2; }
OUT=${OUT:-/tmp/tracenat-bench-e2e/w$WORKERS}
[[ $(id -u) -eq 0 ]] || { echo "bench-e2e: needs root (namespaces, XDP, nftables)" >&2; exit 2; }
for t in nft ip python3; do
  command -v "$t" >/dev/null || { echo "bench-e2e: $t missing: run scripts/setup.sh" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/tracenat
if command -v cargo >/dev/null; then
  (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x $B ]] || { echo "bench-e2e: $B not built" >&2; exit 1; }

# Seconds from a duration like 3s / 500ms / 1m (for the sinks' and samplers' spans).
secs() { python3 -c 'import re,sys
m=re.fullmatch(r"([0-9.]+)(ms|s|m)?",sys.argv[1]); v=float(m[1]); u=m[2] or "s"
print(v/1000 if u=="ms" else v*60 if u=="m" else v)' "$1"; }
DUR_S=$(secs "$DURATION"); NEW_S=$(secs "$NEW_DURATION")
# --new-flows-per-sec takes a plain number: 1M -> 1000000.
NEW_FLOWS_N=$(python3 -c 'import sys; t=sys.argv[1]; m={"k":1e3,"K":1e3,"m":1e6,"M":1e6}
print("%d" % (float(t[:-1])*m[t[-1]] if t[-1] in m else float(t)))' "$NEW_FLOWS")
SINK_FOR=$(python3 -c "print('%gs' % ($DUR_S + 2.5))")
SINK_NEW_FOR=$(python3 -c "print('%gs' % ($NEW_S + 2.5))")

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
LAB=$OUT/lab
rm -rf "$LAB" "$OUT"/*.json "$OUT"/*.hlog "$OUT"/*.txt "$OUT"/*.err
NAT=; SAMPLER=
cleanup() {
  set +e
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
  [[ -n $NAT ]] && kill -TERM "$NAT" 2>/dev/null && wait "$NAT" 2>/dev/null
  if ip netns list 2>/dev/null | grep -qw tn-nat; then
    ip netns exec tn-nat nft delete table ip tnbench 2>/dev/null
    ip netns exec tn-nat sysctl -qw net.ipv4.ip_forward=0
  fi
  "$B" lab down --dir "$LAB" >/dev/null 2>&1
  echo "bench-e2e: lab removed"
}
trap cleanup EXIT

if ! "$B" lab up --workers "$WORKERS" --subscribers 1 --dir "$LAB" >"$OUT/lab-up.txt" 2>&1; then
  cat "$OUT/lab-up.txt" >&2
  echo "bench-e2e: lab up failed (another lab running? see 'tracenat lab status')" >&2
  LAB=/nonexistent-not-ours; trap - EXIT; exit 1
fi
CONF=$LAB/tracenat.toml
# --spin: tracenat's workers never sleep in poll(2) when idle (dataplane.idle-backoff = false;
# the lab config ends with its [dataplane] section).
[[ ${SPIN:-0} == 1 ]] && echo "idle-backoff = false" >> "$CONF"
innat() { ip netns exec tn-nat "$@"; }

# CPU counters: the whole machine's softirq and busy jiffies (/proc/stat, USER_HZ).
cpu_sample() { awk '/^cpu /{print $2+$3+$4+$7+$8, $8}' /proc/stat; }
proc_cpu() { [[ -n ${1:-} ]] && awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

SEND="--interface tn-in-peer --gateway 100.64.0.1 --dst 198.51.100.10:7 --json"
FLOWS="--subscribers 16 --flows 4"

# One-way forwarding at max rate. $1: system name.
phase_max() {
  local s=$1 c0 c1 p0 p1 S
  ip netns exec tn-inet "$B" gen sink --interface tn-out-peer --duration "$SINK_FOR" --json \
    >"$OUT/$s-max-sink.json" 2>"$OUT/$s-max-sink.err" & S=$!
  sleep 0.7
  c0=$(cpu_sample); p0=$(proc_cpu "$NAT")
  ip netns exec tn-access "$B" gen send $SEND $FLOWS --rate max --duration "$DURATION" \
    >"$OUT/$s-max-send.json"
  c1=$(cpu_sample); p1=$(proc_cpu "$NAT")
  kill -TERM $S 2>/dev/null; wait $S || true
  echo "$c0 $c1 $p0 $p1 $DUR_S" >"$OUT/$s-max-cpu.txt"
}

# Round trips at a fixed offered rate.
phase_latency() {
  local s=$1 S
  ip netns exec tn-inet "$B" gen sink --interface tn-out-peer --duration "$SINK_FOR" --reflect \
    --hist-out "$OUT/oneway-$s.hlog" --json >"$OUT/$s-lat-sink.json" 2>"$OUT/$s-lat-sink.err" & S=$!
  sleep 0.7
  ip netns exec tn-access "$B" gen send $SEND $FLOWS --rate "$RATE" --duration "$DURATION" \
    --expect-replies --hist-out "$OUT/rtt-$s.hlog" >"$OUT/$s-lat-send.json"
  kill -TERM $S 2>/dev/null; wait $S || true
}

sessions_now() {
  if [[ $1 == kernel ]]; then
    innat cat /proc/sys/net/netfilter/nf_conntrack_count
  else
    innat "$B" stats --config "$CONF" |
      awk '/^tracenat_events_total/ && /event="sessions_created"/ {n += $NF} END {print n+0}'
  fi
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
slab_kb() { awk '/^Slab:/{print $2}' /proc/meminfo; }

# New sessions per second: every packet a new 5-tuple (new source port) as far as the
# sender keeps up; the NAT counts what it created.
phase_new() {
  local s=$1 S n0 n1 m0 m1 t0 t1
  if [[ $s == kernel ]]; then
    innat conntrack -F >/dev/null 2>&1 || true
    innat sh -c 'while :; do echo "$(date +%s.%N) $(cat /proc/sys/net/netfilter/nf_conntrack_count)"; sleep 0.05; done' \
      >"$OUT/kernel-conntrack-count.txt" & SAMPLER=$!
  fi
  ip netns exec tn-inet "$B" gen sink --interface tn-out-peer --duration "$SINK_NEW_FOR" --json \
    >"$OUT/$s-new-sink.json" 2>"$OUT/$s-new-sink.err" & S=$!
  sleep 0.7
  n0=$(sessions_now "$s")
  if [[ $s == kernel ]]; then m0=$(slab_kb); else m0=$(rss_kb "$NAT"); fi
  t0=$(date +%s.%N)
  ip netns exec tn-access "$B" gen send $SEND --subscribers 1024 --flows 4 --rate max \
    --new-flows-per-sec "$NEW_FLOWS_N" --duration "$NEW_DURATION" >"$OUT/$s-new-send.json"
  t1=$(date +%s.%N)
  sleep 0.3
  n1=$(sessions_now "$s")
  if [[ $s == kernel ]]; then m1=$(slab_kb); else m1=$(rss_kb "$NAT"); fi
  kill -TERM $S 2>/dev/null; wait $S || true
  if [[ -n $SAMPLER ]]; then kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=; fi
  echo "$n0 $n1 $m0 $m1 $t0 $t1" >"$OUT/$s-new.txt"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/load.txt"
echo "== bench-e2e: $WORKERS worker(s)/queue(s), max-rate and ${RATE} pps for $DURATION, new flows $NEW_FLOWS/s for $NEW_DURATION; out $OUT"

echo "== (a) kernel: nftables snat + conntrack in tn-nat, ip_forward=1, no XDP"
innat sysctl -qw net.ipv4.ip_forward=1
innat nft -f - <<'EOF'
table ip tnbench {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "tn-out" ip saddr 100.64.0.0/10 snat to 203.0.113.1-203.0.113.254
  }
}
EOF
innat nft list table ip tnbench >"$OUT/kernel-ruleset.txt"
CT_MAX=$(innat cat /proc/sys/net/netfilter/nf_conntrack_max)
phase_max kernel
innat conntrack -F >/dev/null 2>&1 || true
phase_latency kernel
phase_new kernel
grep -E '^nf_conntrack ' /proc/slabinfo >"$OUT/kernel-slabinfo.txt" || true
innat conntrack -F >/dev/null 2>&1 || true
innat nft delete table ip tnbench
innat sysctl -qw net.ipv4.ip_forward=0

echo "== (b) tracenat run in tn-nat (AF_XDP), ip_forward=0"
# Not through innat(): $! must be tracenat itself (ip netns exec execs it) for its CPU,
# VmRSS and SIGTERM.
ip netns exec tn-nat "$B" run --config "$CONF" >"$OUT/tracenat-run.txt" 2>&1 & NAT=$!
for _ in $(seq 50); do
  innat "$B" stats --config "$CONF" >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 0.5
phase_max tracenat
phase_latency tracenat
phase_new tracenat
kill -TERM "$NAT"; wait "$NAT" || true; NAT=

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"

python3 "$ROOT/scripts/plot-latency.py" --out "$OUT/latency.svg" --csv "$OUT/latency.csv" \
  --title "Round trip through the NAT at $RATE pps, 64 B UDP, $WORKERS queue(s) (veth lab)" \
  "kernel (nftables snat)=$OUT/rtt-kernel.hlog" "tracenat ($WORKERS worker(s))=$OUT/rtt-tracenat.hlog" \
  >"$OUT/latency.txt"

python3 - "$OUT" "$WORKERS" "$RATE" "$CT_MAX" <<'PY'
import csv, json, sys
out, workers, rate, ct_max = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
HZ = 100.0

def j(name):
    t = open(f"{out}/{name}").read()
    return json.loads(t[t.index("{"):])

lat = {r["system"].split(" ")[0]: r for r in csv.DictReader(open(f"{out}/latency.csv"))}
res = {}
for s in ("kernel", "tracenat"):
    r = {}
    ms, mk = j(f"{s}-max-send.json"), j(f"{s}-max-sink.json")
    r["offered_pps"] = ms["pps"]
    r["forwarded_pps"] = mk["stamped"] / ms["duration_s"]
    r["max_loss"] = 1 - mk["stamped"] / max(ms["sent"], 1)
    c0b, c0s, c1b, c1s, p0, p1, d = map(float, open(f"{out}/{s}-max-cpu.txt").read().split())
    r["machine_busy_cores"] = (c1b - c0b) / HZ / d
    r["softirq_cores"] = (c1s - c0s) / HZ / d
    r["nat_process_cores"] = (p1 - p0) / HZ / d
    ls = j(f"{s}-lat-send.json")
    rep = ls["replies"]
    r["lat_offered_pps"] = ls["pps"]
    r["lat_loss"] = rep["loss_ratio"]
    L = lat[s]
    for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max"):
        r[f"rtt_{k}_us"] = float(L[f"{k}_us"])
    n0, n1, m0, m1, t0, t1 = map(float, open(f"{out}/{s}-new.txt").read().split())
    ns = j(f"{s}-new-send.json")
    created = n1 - n0
    r["new_offered_pps"] = ns["pps"]
    r["new_flows_started"] = ns["flows_started"]
    r["sessions_created"] = created
    rate_ = created / ns["duration_s"]
    r["capped"] = False
    if s == "kernel":
        # When the table filled up (nf_conntrack_max), the slope before it is the rate.
        pts = [tuple(map(float, l.split())) for l in open(f"{out}/kernel-conntrack-count.txt") if len(l.split()) == 2]
        if n1 >= 0.95 * ct_max and pts:
            first = next((p for p in pts if p[1] > n0), None)
            full = next((p for p in pts if p[1] >= 0.9 * ct_max), None)
            if first and full and full[0] > first[0]:
                rate_ = (full[1] - first[1]) / (full[0] - first[0])
                r["capped"] = True
        slab = open(f"{out}/kernel-slabinfo.txt").read().split()
        r["conntrack_objsize"] = int(slab[3]) if len(slab) > 3 else None
        r["bytes_per_session"] = (m1 - m0) * 1024 / created if created > 0 else None
        r["memory_how"] = "Slab growth (/proc/meminfo) / conntrack entries; slab object %s B" % r["conntrack_objsize"]
    else:
        r["bytes_per_session"] = (m1 - m0) * 1024 / created if created > 0 else None
        r["memory_how"] = "VmRSS growth of tracenat / sessions created"
    r["new_sessions_per_s"] = rate_
    res[s] = r
json.dump(res, open(f"{out}/results.json", "w"), indent=2)

k, t = res["kernel"], res["tracenat"]
def ratio(a, b):
    return "%.2f×" % (a / b) if a and b else "—"
rows = [
    ("forwarded pps at max offered (one way, 64 B UDP)", "%.0f" % k["forwarded_pps"], "%.0f" % t["forwarded_pps"], ratio(t["forwarded_pps"], k["forwarded_pps"])),
    ("  forwarded pps per busy core of the machine (generator + NAT + sink share 2 vCPUs)", "%.0f" % (k["forwarded_pps"] / k["machine_busy_cores"]), "%.0f" % (t["forwarded_pps"] / t["machine_busy_cores"]), ratio(t["forwarded_pps"] / t["machine_busy_cores"], k["forwarded_pps"] / k["machine_busy_cores"])),
    ("  offered by the generator at max", "%.0f" % k["offered_pps"], "%.0f" % t["offered_pps"], ratio(t["offered_pps"], k["offered_pps"])),
    ("  loss at max", "%.2f %%" % (100 * k["max_loss"]), "%.2f %%" % (100 * t["max_loss"]), ""),
    ("  machine CPU busy during max (cores of 2)", "%.2f" % k["machine_busy_cores"], "%.2f" % t["machine_busy_cores"], ""),
    ("  softirq CPU during max (cores)", "%.2f" % k["softirq_cores"], "%.2f" % t["softirq_cores"], ""),
    ("  tracenat process CPU during max (cores)", "—", "%.2f" % t["nat_process_cores"], ""),
    (f"round-trip loss at {rate} pps offered", "%.4f %%" % (100 * k["lat_loss"]), "%.4f %%" % (100 * t["lat_loss"]), ""),
]
for p in ("p50", "p90", "p99", "p99.9", "p99.99"):
    rows.append((f"round trip {p} at {rate} pps (µs, lower is better)", "%.1f" % k[f"rtt_{p}_us"], "%.1f" % t[f"rtt_{p}_us"], ratio(t[f"rtt_{p}_us"], k[f"rtt_{p}_us"])))
rows += [
    ("new sessions per second" + (" (kernel: slope before nf_conntrack_max)" if k["capped"] else ""), "%.0f" % k["new_sessions_per_s"], "%.0f" % t["new_sessions_per_s"], ratio(t["new_sessions_per_s"], k["new_sessions_per_s"])),
    ("  sessions created in the run", "%d" % k["sessions_created"], "%d" % t["sessions_created"], ""),
    ("  packets offered per second (each a new 5-tuple)", "%.0f" % k["new_offered_pps"], "%.0f" % t["new_offered_pps"], ""),
    ("memory per session (bytes; how: below)", "%.0f" % k["bytes_per_session"] if k["bytes_per_session"] else "—", "%.0f" % t["bytes_per_session"] if t["bytes_per_session"] else "—", ratio(t["bytes_per_session"] or 0, k["bytes_per_session"] or 0)),
]
lines = [f"| {workers} queue(s)/worker(s) | kernel (nftables snat) | tracenat | tracenat/kernel |", "|---|---:|---:|---:|"]
lines += ["| %s | %s | %s | %s |" % r for r in rows]
lines += ["", "machine load average (1, 5, 15 min): " + "; ".join(l.strip() for l in open(f"{out}/load.txt"))]
lines += ["", "memory: kernel — %s; tracenat — %s." % (k["memory_how"], t["memory_how"])]
text = "\n".join(lines) + "\n"
open(f"{out}/results.md", "w").write(text)
print(text)
PY
cat "$OUT/latency.txt"
echo "results: $OUT/results.md  $OUT/results.json  plot: $OUT/latency.svg  histograms: $OUT/rtt-kernel.hlog $OUT/rtt-tracenat.hlog"
