#!/usr/bin/env bash
# End-to-end benchmark in the veth lab: the kernel's NAT (nftables snat + conntrack), the
# dataplane's own ceiling and tracenat, side by side, on the same lab with the same
# generator, in one run.
#
#   scripts/bench-e2e.sh [--workers N] [--duration 3s] [--rate 50k] [--new-flows 1M]
#                        [--new-duration 1s] [--tcp-time 3] [--out DIR] [--spin] [--isolate]
#
# --isolate: the NAT gets the machine's last WORKERS CPUs to itself and the traffic's
# endpoints (generator, sink, iperf3) the others, as on a box whose NAT cores carry
# nothing else. tracenat's and the ceiling's workers are pinned there (workers.cores);
# the kernel's NAT runs in softirq, so RPS on tn-in and tn-out steers its receive
# processing there. Without it everything shares every CPU (tracenat's worker w is
# pinned to CPU w, the default) and the kernel's NAT runs in the generator's own send.
# --spin: tracenat's and the ceiling's workers never sleep (dataplane.idle-backoff = false).
# With --isolate that is what the default, "auto", chooses on a CPU the kernel was booted
# to keep for it (isolcpus=, nohz_full=), which the lab cannot arrange at run time.
#
# Root. Builds tracenat (release, in $CARGO_TARGET_DIR if set) if needed, brings the lab up
# in DIR/lab (`tracenat lab up --dir`), and always takes it down again (trap EXIT). For
# each system:
#   0. (ceiling, tracenat) the process's CPU while idle: utime+stime over 3 s, no traffic;
#   1. forwarded pps at max rate: `gen send --rate max` in tn-access on tn-in-peer ->
#      `gen sink` in tn-inet on tn-out-peer (one way, 16 subscribers x 4 flows, 64 B UDP);
#   2. loss and round-trip latency at a fixed offered rate (--rate): sink --reflect,
#      send --expect-replies --hist-out (HdrHistogram interval log); the NAT process's CPU;
#   2b. (kernel, tracenat) one bulk TCP stream each way, iperf3 -J for --tcp-time seconds
#      from the subscriber tn-sub-1 to `iperf3 -s` on 198.51.100.10 in tn-inet (-R for the
#      download): bits/s received, retransmits, and the CPU of the machine, softirq and NAT;
#   3. new sessions per second: send --rate max --new-flows-per-sec (--new-flows) from
#      1024 subscribers for --new-duration; sessions counted by the NAT itself (kernel:
#      nf_conntrack_count in tn-nat, sampled every 50 ms; tracenat: its
#      sessions_created counter from `tracenat stats`);
#   4. memory per session: kernel: the nf_conntrack slab object size (/proc/slabinfo) and
#      the growth of Slab in /proc/meminfo over phase 3 divided by the sessions created;
#      tracenat: its VmRSS after phase 3 divided by the sessions it can hold (workers x
#      limits.max-sessions): it commits every table at start, so what a session costs is
#      fixed then, not grown into.
# Phases 3 and 4 are meaningless for the ceiling (it keeps no sessions): "—" there.
# Writes DIR/results.md (the table, with tracenat/kernel and tracenat/ceiling ratios),
# DIR/results.json, the HdrHistogram logs DIR/rtt-{kernel,ceiling,tracenat}.hlog (and one-way DIR/oneway-*.hlog), the
# generator's JSON reports, and the plot DIR/latency.svg (scripts/plot-latency.py).
#
# (a) the kernel: ip_forward=1 in tn-nat and
#       table ip tnbench { chain postrouting { type nat hook postrouting priority srcnat;
#         oifname "tn-out" ip saddr 100.64.0.0/10 snat to 203.0.113.1-203.0.113.254 } }
#     no XDP program on tn-in/tn-out; conntrack does the rest.
# (b) the ceiling: `tracenat run --bench-ceiling` with the same config: the same AF_XDP
#     worker loop, each frame only TTL-decremented and sent out of the other side
#     (engine::ceiling; benchmark only, no NAT), so tracenat/ceiling is the NAT's cost.
# (c) tracenat: `tracenat run --config DIR/lab/tracenat.toml` in tn-nat, ip_forward=0.
set -euo pipefail

WORKERS=1
DURATION=3s
# Unmeasured traffic at --rate before each latency measurement.
WARMUP=3s
RATE=50k
NEW_FLOWS=1M
NEW_DURATION=1s
TCP_TIME=3
OUT=
usage() { sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while (($#)); do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --new-flows) NEW_FLOWS=$2; shift 2 ;;
    --new-duration) NEW_DURATION=$2; shift 2 ;;
    --tcp-time) TCP_TIME=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --spin) SPIN=1; shift ;;
    --isolate) ISOLATE=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench-e2e: unknown argument $1" >&2; usage ;;
  esac
done
[[ $WORKERS =~ ^[0-9]+$ && $WORKERS -ge 1 ]] || { echo "bench-e2e: --workers N" >&2; exit 2; }
OUT=${OUT:-/tmp/tracenat-bench-e2e/w$WORKERS}
[[ $(id -u) -eq 0 ]] || { echo "bench-e2e: needs root (namespaces, XDP, nftables)" >&2; exit 2; }
for t in nft ip python3 iperf3; do
  command -v "$t" >/dev/null || { echo "bench-e2e: $t missing: run scripts/setup.sh" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# TRACENAT_BIN: a tracenat already built (the test that runs this script gives its own).
B=${TRACENAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tracenat}
if [[ -z ${TRACENAT_BIN:-} ]] && command -v cargo >/dev/null; then
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
SINK_LAT_FOR=$(python3 -c "print('%gs' % ($DUR_S + $(secs "$WARMUP") + 3.5))")
SINK_NEW_FOR=$(python3 -c "print('%gs' % ($NEW_S + 2.5))")

# The NAT's CPUs and the endpoints' (--isolate); empty: no placement.
NAT_CPUS=; EP=
if [[ ${ISOLATE:-0} == 1 ]]; then
  NCPU=$(nproc)
  ((NCPU > WORKERS)) || { echo "bench-e2e: --isolate needs more CPUs ($NCPU) than workers" >&2; exit 2; }
  NAT_CPUS=$(seq -s, $((NCPU - WORKERS)) $((NCPU - 1)))
  EP="taskset -c 0-$((NCPU - WORKERS - 1))"
fi
# RPS mask (hex) of the NAT's CPUs, for the kernel's receive processing.
rps_mask() { python3 -c 'import sys; print("%x" % sum(1 << int(c) for c in sys.argv[1].split(",") if c))' "$NAT_CPUS"; }

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
LAB=$OUT/lab
rm -rf "$LAB" "$OUT"/*.json "$OUT"/*.hlog "$OUT"/*.txt "$OUT"/*.err
NAT=; SAMPLER=; IPERF=
cleanup() {
  set +e
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
  [[ -n $IPERF ]] && kill "$IPERF" 2>/dev/null && wait "$IPERF" 2>/dev/null
  [[ -n $NAT ]] && kill -TERM "$NAT" 2>/dev/null && wait "$NAT" 2>/dev/null
  if ip netns list 2>/dev/null | grep -qw tn-nat; then
    ip netns exec tn-nat nft delete table ip tnbench 2>/dev/null
    ip netns exec tn-nat sysctl -qw net.ipv4.ip_forward=0
    set_rps 0
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
# Sessions each worker's tables hold (limits.max-sessions; the default when unset).
MAX_SESSIONS=$(awk -F= '/^max-sessions *=/{gsub(/[ _]/, "", $2); print $2}' "$CONF")
MAX_SESSIONS=${MAX_SESSIONS:-1048576}
# --spin: tracenat's workers never sleep in poll(2) when idle (dataplane.idle-backoff = false).
[[ ${SPIN:-0} == 1 ]] && sed -i '/^\[dataplane\]/a idle-backoff = false' "$CONF"
[[ -n $NAT_CPUS ]] && sed -i "/^\[workers\]/a cores = [$NAT_CPUS]" "$CONF"
innat() { ip netns exec tn-nat "$@"; }
# RPS mask $1 on every rx queue of the NAT's two interfaces (sysfs as tn-nat sees it).
set_rps() {
  innat sh -c "for q in /sys/class/net/tn-in/queues/rx-* /sys/class/net/tn-out/queues/rx-*; do echo $1 > \$q/rps_cpus; done"
}

# CPU counters: the whole machine's softirq and busy jiffies (/proc/stat, USER_HZ).
# Third figure: the busy jiffies of the NAT's CPUs (--isolate), else 0.
cpu_sample() {
  awk -v cpus=",$NAT_CPUS," '/^cpu /{b=$2+$3+$4+$7+$8; s=$8}
    /^cpu[0-9]/{if (index(cpus, "," substr($1, 4) ",")) n+=$2+$3+$4+$7+$8}
    END {print b, s, n+0}' /proc/stat
}
proc_cpu() { [[ -n ${1:-} ]] && awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

TCP_SERVER=198.51.100.10
SEND="--interface tn-in-peer --gateway 100.64.0.1 --dst 198.51.100.10:7 --json"
FLOWS="--subscribers 16 --flows 4"

# Starts `tracenat run` in tn-nat as system $1 ($2...: extra arguments) and waits until it
# serves stats.
start_nat() {
  local s=$1; shift
  # Not through innat(): $! must be tracenat itself (ip netns exec execs it) for its CPU,
  # VmRSS and SIGTERM.
  ip netns exec tn-nat "$B" run --config "$CONF" "$@" >"$OUT/$s-run.txt" 2>&1 & NAT=$!
  for _ in $(seq 50); do
    innat "$B" stats --config "$CONF" >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 0.5
}
stop_nat() { kill -TERM "$NAT"; wait "$NAT" || true; NAT=; }

# The NAT process's CPU with no traffic at all (jiffies over 3 s).
phase_idle() {
  local s=$1 p0 p1
  p0=$(proc_cpu "$NAT"); sleep 3; p1=$(proc_cpu "$NAT")
  echo "$p0 $p1 3" >"$OUT/$s-idle-cpu.txt"
}

# One-way forwarding at max rate. $1: system name.
phase_max() {
  local s=$1 c0 c1 p0 p1 S
  ip netns exec tn-inet $EP "$B" gen sink --interface tn-out-peer --duration "$SINK_FOR" --json \
    >"$OUT/$s-max-sink.json" 2>"$OUT/$s-max-sink.err" & S=$!
  sleep 0.7
  c0=$(cpu_sample); p0=$(proc_cpu "$NAT")
  ip netns exec tn-access $EP "$B" gen send $SEND $FLOWS --rate max --duration "$DURATION" \
    >"$OUT/$s-max-send.json"
  c1=$(cpu_sample); p1=$(proc_cpu "$NAT")
  kill -TERM $S 2>/dev/null; wait $S || true
  echo "$c0 $c1 $p0 $p1 $DUR_S" >"$OUT/$s-max-cpu.txt"
}

# Round trips at a fixed offered rate.
phase_latency() {
  local s=$1 S c0 c1 p0 p1
  ip netns exec tn-inet $EP "$B" gen sink --interface tn-out-peer --duration "$SINK_LAT_FOR" --reflect \
    --hist-out "$OUT/oneway-$s.hlog" --json >"$OUT/$s-lat-sink.json" 2>"$OUT/$s-lat-sink.err" & S=$!
  sleep 0.7
  # A warm-up at the same rate, not measured: the first seconds after the max-rate phase
  # or a previous system's run can carry a passing tail (docs/performance.md, "Latency").
  ip netns exec tn-access $EP "$B" gen send $SEND $FLOWS --rate "$RATE" --duration "$WARMUP" \
    --expect-replies >"$OUT/$s-lat-warmup.json"
  c0=$(cpu_sample); p0=$(proc_cpu "$NAT")
  ip netns exec tn-access $EP "$B" gen send $SEND $FLOWS --rate "$RATE" --duration "$DURATION" \
    --expect-replies --hist-out "$OUT/rtt-$s.hlog" >"$OUT/$s-lat-send.json"
  c1=$(cpu_sample); p1=$(proc_cpu "$NAT")
  kill -TERM $S 2>/dev/null; wait $S || true
  echo "$c0 $c1 $p0 $p1 $DUR_S" >"$OUT/$s-lat-cpu.txt"
}

# Packets and bytes the NAT's interface $1 received: their ratio is the size of what the
# NAT handles per packet (the kernel's GRO/GSO super-packets, or wire-size frames).
rx_counts() { innat cat "/sys/class/net/$1/statistics/rx_packets" "/sys/class/net/$1/statistics/rx_bytes" | tr '\n' ' '; }

# One bulk TCP stream each way between the subscriber tn-sub-1 and 198.51.100.10.
phase_tcp() {
  local s=$1 dir c0 c1 p0 p1 ifc r0 r1
  ip netns exec tn-inet $EP iperf3 -s -B "$TCP_SERVER" >"$OUT/$s-iperf3-server.txt" 2>&1 & IPERF=$!
  sleep 0.5
  for dir in up down; do
    ifc=tn-in; [[ $dir == down ]] && ifc=tn-out
    c0=$(cpu_sample); p0=$(proc_cpu "$NAT"); r0=$(rx_counts $ifc)
    ip netns exec tn-sub-1 $EP iperf3 -c "$TCP_SERVER" -t "$TCP_TIME" -J $([[ $dir == down ]] && echo -R) \
      >"$OUT/$s-tcp-$dir.json" 2>"$OUT/$s-tcp-$dir.err" || true
    c1=$(cpu_sample); p1=$(proc_cpu "$NAT"); r1=$(rx_counts $ifc)
    echo "$c0 $c1 $p0 $p1 $TCP_TIME" >"$OUT/$s-tcp-$dir-cpu.txt"
    echo "$r0 $r1" >"$OUT/$s-tcp-$dir-rx.txt"
  done
  kill "$IPERF" 2>/dev/null; wait "$IPERF" 2>/dev/null || true; IPERF=
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
    # Not through innat(), as for the NAT: $! must be the loop itself, or killing it leaves
    # the loop running (two fork+execs every 50 ms) through the ceiling's and tracenat's
    # phases, which it did until 2026-12-01 and which gave them a p99 of 1.2-1.6 ms.
    ip netns exec tn-nat sh -c 'while :; do echo "$(date +%s.%N) $(cat /proc/sys/net/netfilter/nf_conntrack_count)"; sleep 0.05; done' \
      >"$OUT/kernel-conntrack-count.txt" & SAMPLER=$!
  fi
  ip netns exec tn-inet $EP "$B" gen sink --interface tn-out-peer --duration "$SINK_NEW_FOR" --json \
    >"$OUT/$s-new-sink.json" 2>"$OUT/$s-new-sink.err" & S=$!
  sleep 0.7
  n0=$(sessions_now "$s")
  if [[ $s == kernel ]]; then m0=$(slab_kb); else m0=$(rss_kb "$NAT"); fi
  t0=$(date +%s.%N)
  ip netns exec tn-access $EP "$B" gen send $SEND --subscribers 1024 --flows 4 --rate max \
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
[[ -n $NAT_CPUS ]] && set_rps "$(rps_mask)"
CT_MAX=$(innat cat /proc/sys/net/netfilter/nf_conntrack_max)
phase_max kernel
innat conntrack -F >/dev/null 2>&1 || true
phase_latency kernel
phase_tcp kernel
innat conntrack -F >/dev/null 2>&1 || true
phase_new kernel
grep -E '^nf_conntrack ' /proc/slabinfo >"$OUT/kernel-slabinfo.txt" || true
innat conntrack -F >/dev/null 2>&1 || true
innat nft delete table ip tnbench
innat sysctl -qw net.ipv4.ip_forward=0
set_rps 0

echo "== (b) the ceiling: tracenat run --bench-ceiling in tn-nat (AF_XDP, no NAT), ip_forward=0"
start_nat ceiling --bench-ceiling
phase_idle ceiling
phase_max ceiling
phase_latency ceiling
stop_nat

echo "== (c) tracenat run in tn-nat (AF_XDP), ip_forward=0"
start_nat tracenat
phase_idle tracenat
phase_max tracenat
phase_latency tracenat
phase_tcp tracenat
phase_new tracenat
stop_nat

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"

python3 "$ROOT/scripts/plot-latency.py" --out "$OUT/latency.svg" --csv "$OUT/latency.csv" \
  --title "Round trip through the NAT at $RATE pps, 64 B UDP, $WORKERS queue(s) (veth lab)" \
  "kernel (nftables snat)=$OUT/rtt-kernel.hlog" "ceiling (no NAT, $WORKERS worker(s))=$OUT/rtt-ceiling.hlog" \
  "tracenat ($WORKERS worker(s))=$OUT/rtt-tracenat.hlog" >"$OUT/latency.txt"

python3 - "$OUT" "$WORKERS" "$RATE" "$CT_MAX" "$NAT_CPUS" "$MAX_SESSIONS" <<'PY'
import csv, json, sys
out, workers, rate, ct_max, nat_cpus = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
capacity = workers * int(sys.argv[6])
HZ = 100.0
SYSTEMS = ("kernel", "ceiling", "tracenat")

def j(name):
    t = open(f"{out}/{name}").read()
    return json.loads(t[t.index("{"):])

def cpu(name):
    """Busy and softirq cores of the machine, and the NAT process's cores, over a phase."""
    return cpu4(name)[:3]

def cpu4(name):
    """cpu(), and the busy cores of the NAT's own CPUs (--isolate)."""
    c0b, c0s, c0n, c1b, c1s, c1n, p0, p1, d = map(float, open(f"{out}/{name}").read().split())
    return (c1b - c0b) / HZ / d, (c1s - c0s) / HZ / d, (p1 - p0) / HZ / d, (c1n - c0n) / HZ / d

def tcp(s, direction):
    r = j(f"{s}-tcp-{direction}.json")
    if "error" in r:
        return {"error": r["error"]}
    end = r["end"]
    busy, soft, nat = cpu(f"{s}-tcp-{direction}-cpu.txt")
    return {
        "bits_per_second": end["sum_received"]["bits_per_second"],
        "retransmits": end["sum_sent"].get("retransmits"),
        "sender_cpu_percent": end["cpu_utilization_percent"]["host_total" if direction == "up" else "remote_total"],
        "receiver_cpu_percent": end["cpu_utilization_percent"]["remote_total" if direction == "up" else "host_total"],
        "machine_busy_cores": busy, "softirq_cores": soft, "nat_process_cores": nat,
        "bytes_per_packet_in": rx_size(f"{s}-tcp-{direction}-rx.txt"),
    }

def rx_size(name):
    """Bytes per packet the NAT's ingress interface received over a phase."""
    p0, b0, p1, b1 = map(float, open(f"{out}/{name}").read().split())
    return (b1 - b0) / (p1 - p0) if p1 > p0 else None

def new_sessions(s, r):
    n0, n1, m0, m1, t0, t1 = map(float, open(f"{out}/{s}-new.txt").read().split())
    ns = j(f"{s}-new-send.json")
    created = n1 - n0
    r["new_offered_pps"] = ns["pps"]
    r["new_flows_started"] = ns["flows_started"]
    r["sessions_created"] = created
    rate_ = created / ns["duration_s"]
    r["capped"] = False
    if s == "kernel":
        r["bytes_per_session"] = (m1 - m0) * 1024 / created if created > 0 else None
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
        r["memory_how"] = "Slab growth (/proc/meminfo) / conntrack entries; slab object %s B" % r["conntrack_objsize"]
    else:
        r["bytes_per_session"] = m1 * 1024 / capacity
        r["memory_how"] = "VmRSS of tracenat (every table committed at start) / the %d sessions it can hold" % capacity
    r["new_sessions_per_s"] = rate_

lat = {r["system"].split(" ")[0]: r for r in csv.DictReader(open(f"{out}/latency.csv"))}
res = {}
for s in SYSTEMS:
    r = {}
    ms, mk = j(f"{s}-max-send.json"), j(f"{s}-max-sink.json")
    r["offered_pps"] = ms["pps"]
    r["forwarded_pps"] = mk["stamped"] / ms["duration_s"]
    r["max_loss"] = 1 - mk["stamped"] / max(ms["sent"], 1)
    r["machine_busy_cores"], r["softirq_cores"], r["nat_process_cores"], r["nat_cpus_busy_cores"] = cpu4(f"{s}-max-cpu.txt")
    ls = j(f"{s}-lat-send.json")
    r["lat_offered_pps"] = ls["pps"]
    r["lat_loss"] = ls["replies"]["loss_ratio"]
    r["lat_machine_busy_cores"], r["lat_softirq_cores"], r["lat_nat_process_cores"], r["lat_nat_cpus_busy_cores"] = cpu4(f"{s}-lat-cpu.txt")
    for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max"):
        r[f"rtt_{k}_us"] = float(lat[s][f"{k}_us"])
    if s != "kernel":
        p0, p1, d = map(float, open(f"{out}/{s}-idle-cpu.txt").read().split())
        r["idle_nat_process_cores"] = (p1 - p0) / HZ / d
    if s != "ceiling":
        r["tcp"] = {d: tcp(s, d) for d in ("up", "down")}
        new_sessions(s, r)
    res[s] = r
res["layout"] = {"nat_cpus": nat_cpus or None}
json.dump(res, open(f"{out}/results.json", "w"), indent=2)

def ratio(a, b):
    return "%.2f×" % (a / b) if a and b else "—"

def row(label, get, fmt, ratios=True):
    """One line: the figure for each system ("—" where it has none) and the two ratios."""
    v = {}
    for s in SYSTEMS:
        try:
            v[s] = get(res[s])
        except (KeyError, TypeError, ZeroDivisionError):
            v[s] = None
    cells = [fmt % v[s] if v[s] is not None else "—" for s in SYSTEMS]
    if ratios:
        cells += [ratio(v["tracenat"], v["kernel"]), ratio(v["tracenat"], v["ceiling"])]
    else:
        cells += ["", ""]
    return "| %s | %s |" % (label, " | ".join(cells))

def gbit(r, d):
    return r["tcp"][d]["bits_per_second"] / 1e9

def tcp_cpu(d):
    """softirq / NAT process cores during one TCP direction, per system."""
    cells = []
    for s in SYSTEMS:
        t = res[s].get("tcp", {}).get(d)
        if not t or "error" in t:
            cells.append("—")
        elif s == "kernel":
            cells.append("%.2f / —" % t["softirq_cores"])
        else:
            cells.append("%.2f / %.2f" % (t["softirq_cores"], t["nat_process_cores"]))
    return "|   softirq / NAT process CPU %s (cores) | %s |  |  |" % (d, " | ".join(cells))

rows = [
    row("forwarded pps at max offered (one way, 64 B UDP)", lambda r: r["forwarded_pps"], "%.0f"),
    row("  forwarded pps per busy core of the machine (generator + NAT + sink share 2 vCPUs)", lambda r: r["forwarded_pps"] / r["machine_busy_cores"], "%.0f"),
    row("  offered by the generator at max", lambda r: r["offered_pps"], "%.0f"),
    row("  loss at max", lambda r: 100 * r["max_loss"], "%.2f %%", False),
    row("  machine CPU busy during max (cores of 2)", lambda r: r["machine_busy_cores"], "%.2f", False),
    row("  softirq CPU during max (cores)", lambda r: r["softirq_cores"], "%.2f", False),
    row("  NAT process CPU during max (cores)", lambda r: r["nat_process_cores"] if "idle_nat_process_cores" in r else None, "%.2f", False),
] + ([row(f"  the NAT's own CPU(s) {nat_cpus} busy during max (cores)", lambda r: r["nat_cpus_busy_cores"], "%.2f", False)] if nat_cpus else []) + [
    row(f"round-trip loss at {rate} pps offered", lambda r: 100 * r["lat_loss"], "%.4f %%", False),
]
for p in ("p50", "p90", "p99", "p99.9", "p99.99"):
    rows.append(row(f"round trip {p} at {rate} pps (µs, lower is better)", lambda r, p=p: r[f"rtt_{p}_us"], "%.1f"))
rows += [
    row(f"  machine CPU busy at {rate} pps (cores of 2)", lambda r: r["lat_machine_busy_cores"], "%.2f", False),
    row(f"  softirq CPU at {rate} pps (cores)", lambda r: r["lat_softirq_cores"], "%.2f", False),
    row(f"  NAT process CPU at {rate} pps (cores)", lambda r: r["lat_nat_process_cores"] if "idle_nat_process_cores" in r else None, "%.2f", False),
] + ([row(f"  the NAT's own CPU(s) {nat_cpus} busy at {rate} pps (cores)", lambda r: r["lat_nat_cpus_busy_cores"], "%.2f", False)] if nat_cpus else []) + [
    row("  NAT process CPU idle, no traffic (cores)", lambda r: r["idle_nat_process_cores"], "%.3f", False),
    row("one TCP stream up, subscriber → server (Gbit/s, iperf3)", lambda r: gbit(r, "up"), "%.2f"),
    row("  retransmits up", lambda r: r["tcp"]["up"]["retransmits"], "%d", False),
    row("  bytes per packet the NAT handles up (GRO/GSO or wire frames)", lambda r: r["tcp"]["up"]["bytes_per_packet_in"], "%.0f", False),
    tcp_cpu("up"),
    row("one TCP stream down, server → subscriber (Gbit/s, iperf3 -R)", lambda r: gbit(r, "down"), "%.2f"),
    row("  retransmits down", lambda r: r["tcp"]["down"]["retransmits"], "%d", False),
    row("  bytes per packet the NAT handles down", lambda r: r["tcp"]["down"]["bytes_per_packet_in"], "%.0f", False),
    tcp_cpu("down"),
    row("new sessions per second" + (" (kernel: slope before nf_conntrack_max)" if res["kernel"]["capped"] else ""), lambda r: r["new_sessions_per_s"], "%.0f"),
    row("  sessions created in the run", lambda r: r["sessions_created"], "%d", False),
    row("  packets offered per second (each a new 5-tuple)", lambda r: r["new_offered_pps"], "%.0f", False),
    row("memory per session (bytes; how: below)", lambda r: r["bytes_per_session"], "%.0f"),
]

lines = [f"| {workers} queue(s)/worker(s) | kernel (nftables snat) | ceiling (no NAT) | tracenat | tracenat/kernel | tracenat/ceiling |",
         "|---|---:|---:|---:|---:|---:|"]
lines += rows
layout = (f"isolated: the NAT on CPU(s) {nat_cpus} (tracenat's workers pinned there, the kernel's receive processing steered there by RPS), the generator, sink and iperf3 on the others"
          if nat_cpus else "shared: generator, sink, iperf3 and NAT on every CPU (tracenat's worker w pinned to CPU w)")
lines += ["", "layout: " + layout]
lines += ["", "machine load average (1, 5, 15 min): " + "; ".join(l.strip() for l in open(f"{out}/load.txt"))]
lines += ["", "memory: kernel — %s; tracenat — %s." % (res["kernel"]["memory_how"], res["tracenat"]["memory_how"])]
for s in ("kernel", "tracenat"):
    for d in ("up", "down"):
        t = res[s]["tcp"][d]
        if "error" in t:
            lines += ["", f"iperf3 {d} through {s} failed: {t['error']}"]
text = "\n".join(lines) + "\n"
open(f"{out}/results.md", "w").write(text)
print(text)
PY
cat "$OUT/latency.txt"
echo "results: $OUT/results.md  $OUT/results.json  plot: $OUT/latency.svg  histograms: $OUT/rtt-{kernel,ceiling,tracenat}.hlog"
