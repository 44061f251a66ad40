#!/usr/bin/env bash
# Soak: the lab at a steady mix for DURATION, then every check an operator would make
# after months of uptime.
#
#   scripts/soak.sh DURATION [--rate 5000] [--flows 1024] [--churn 20] [--out DIR]
#
# Root. Uses $TRACENAT if set, else builds target/release/tracenat. Brings the lab up in
# DIR/lab (1 worker, 1 subscriber namespace), runs `tracenat run`, and drives it with one
# `tracenat gen send` from tn-access: --flows UDP flows (16 subscribers) at --rate packets
# per second in all, of which --churn a second are new flows replacing old ones (the
# replaced flows go quiet and expire after timeouts.udp, 2 min), answered by a reflecting
# `gen sink` in tn-inet. Every 10 s it samples the NAT's VmRSS and live sessions. Then it
# stops the NAT (SIGTERM) and checks:
#   * resident memory flat after warm-up: the largest sample after the first third of the
#     run exceeds the sample at that point by at most 4 MiB or 5 %;
#   * UMEM frames all accounted for at exit;
#   * the log: `log verify` clean; as many creation records as sessions the NAT created,
#     and as many end records (each session ends by the stop: it expired, or the stop
#     ended it);
#   * counters that must stay zero stayed zero: drops of any reason, tx_ring_full,
#     no_free_frame, not_for_dataplane, handoff_dropped, log write errors, log records lost.
# Writes DIR/soak.json (samples, counters, checks) and prints a summary; exits 1 if a
# check fails. The lab is always taken down (trap EXIT).
set -euo pipefail

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 ]] || usage
DURATION=$1; shift
RATE=5000
FLOWS=1024
CHURN=20
OUT=/tmp/tracenat-soak
while (($#)); do
  case "$1" in
    --rate) RATE=$2; shift 2 ;;
    --flows) FLOWS=$2; shift 2 ;;
    --churn) CHURN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "soak: unknown argument $1" >&2; usage ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "soak: needs root (namespaces, XDP)" >&2; exit 2; }
SECS=$(python3 -c 'import re,sys
m=re.fullmatch(r"([0-9.]+)(s|m|h)?",sys.argv[1])
if not m: sys.exit("soak: DURATION like 90s, 2m or 1h")
v=float(m[1]); print(int(v*{"s":1,"m":60,"h":3600}[m[2] or "s"]))' "$DURATION")
(( SECS >= 30 )) || { echo "soak: DURATION must be at least 30s" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${TRACENAT:-}
if [[ -z $B ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
  B=${CARGO_TARGET_DIR:-$ROOT/target}/release/tracenat
fi
[[ -x $B ]] || { echo "soak: $B is not executable" >&2; exit 1; }

mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
LAB=$OUT/lab
rm -rf "$LAB" "$OUT"/soak.json "$OUT"/*.txt
NAT=; SINK=
cleanup() {
  set +e
  [[ -n $SINK ]] && kill -TERM "$SINK" 2>/dev/null && wait "$SINK" 2>/dev/null
  [[ -n $NAT ]] && kill -TERM "$NAT" 2>/dev/null && wait "$NAT" 2>/dev/null
  "$B" lab down --dir "$LAB" >/dev/null 2>&1
}
trap cleanup EXIT

if ! "$B" lab up --workers 1 --subscribers 1 --dir "$LAB" >"$OUT/lab-up.txt" 2>&1; then
  cat "$OUT/lab-up.txt" >&2
  echo "soak: lab up failed (another lab running? see 'tracenat lab status')" >&2
  LAB=/nonexistent-not-ours; exit 1
fi
CONF=$LAB/tracenat.toml
printf '\n[timeouts]\nudp = "2m"\n' >>"$CONF"
innat() { ip netns exec tn-nat "$@"; }
metrics() { innat "$B" stats --config "$CONF"; }

# Not through innat(): $! must be tracenat itself (ip netns exec execs it).
ip netns exec tn-nat "$B" run --config "$CONF" >"$OUT/run.txt" 2>&1 & NAT=$!
for _ in $(seq 100); do metrics >/dev/null 2>&1 && break; sleep 0.2; done
metrics >/dev/null || { cat "$OUT/run.txt" >&2; echo "soak: the NAT did not come up" >&2; exit 1; }

ip netns exec tn-inet "$B" gen sink --interface tn-out-peer --duration "$((SECS + 10))s" \
  --reflect --json >"$OUT/sink.txt" 2>&1 & SINK=$!
sleep 1
ip netns exec tn-access "$B" gen send --interface tn-in-peer --gateway 100.64.0.1 \
  --dst 198.51.100.10:7,198.51.100.20:9 --subscribers 16 --flows "$((FLOWS / 16))" \
  --rate "$RATE" --new-flows-per-sec "$CHURN" --duration "${SECS}s" --expect-replies \
  --json >"$OUT/send.txt" 2>&1 &
SEND=$!

# One sample every 10 s: seconds, VmRSS (KiB), live sessions.
: >"$OUT/samples.txt"
START=$(date +%s)
while kill -0 "$SEND" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$NAT/status")
  live=$(metrics 2>/dev/null | awk '/^tracenat_sessions\{/{s+=$2} END{print s+0}')
  echo "$(( $(date +%s) - START )) $rss $live" >>"$OUT/samples.txt"
  sleep 10
done
wait "$SEND" || { cat "$OUT/send.txt" >&2; echo "soak: gen send failed" >&2; exit 1; }
metrics >"$OUT/metrics.txt"
kill -TERM "$SINK"; wait "$SINK" || true; SINK=
kill -TERM "$NAT"; wait "$NAT" || true; NAT=
"$B" log verify --dir "$LAB/log" >"$OUT/verify.txt" 2>&1 && VERIFY=0 || VERIFY=$?
"$B" log decode --dir "$LAB/log" --format json >"$OUT/decode.jsonl"

python3 - "$OUT" "$SECS" "$VERIFY" <<'EOF'
import json, re, sys
out, secs, verify = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
samples = [tuple(map(int, l.split())) for l in open(f"{out}/samples.txt") if l.strip()]
run = open(f"{out}/run.txt").read()
metrics = open(f"{out}/metrics.txt").read()

def metric(name, **labels):
    total = 0
    for line in metrics.splitlines():
        m = re.match(rf"tracenat_{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m[1] or "") for k, v in labels.items()):
            total += float(m[2])
    return int(total)

def reported(prefix):
    m = re.search(rf"^{re.escape(prefix)}\s*(-?\d+)", run, re.M)
    return int(m[1]) if m else None

kinds = {}
for line in open(f"{out}/decode.jsonl"):
    try:
        kind = json.loads(line).get("kind")
    except ValueError:
        continue
    kinds[kind] = kinds.get(kind, 0) + 1
created = reported("sessions:")
at_stop = re.search(r"(\d+) still open at the stop", run)
at_stop = int(at_stop[1]) if at_stop else None
expired = metric("events_total", event="sessions_expired")
warm = [s for s in samples if s[0] >= secs / 3]
rss_base = warm[0][1] if warm else None
rss_max = max((s[1] for s in warm), default=None)
zero = {
    "drops": metric("drops_total"),
    "tx_ring_full": metric("tx_ring_full_total"),
    "no_free_frame": metric("no_free_frame_total"),
    "not_for_dataplane": metric("not_for_dataplane_total"),
    "handoff_dropped": metric("handoff_dropped_total"),
    "log_write_errors": metric("log_write_errors_total"),
    "log_records_lost": metric("log_records_lost_total"),
}
checks = {
    "rss_flat_after_warm_up": rss_base is not None
        and rss_max - rss_base <= max(4096, rss_base * 0.05),
    "umem_frames_accounted": reported("UMEM frames unaccounted for at exit:") == 0,
    "log_verifies": verify == 0,
    "a_creation_record_per_session": created is not None and kinds.get("session_created", 0) == created,
    # Every session ended by the stop: it expired, or the stop ended it.
    "an_end_record_per_session": created is not None
        and kinds.get("session_ended", 0) == created,
    "zero_counters_stayed_zero": all(v == 0 for v in zero.values()),
}
send = open(f"{out}/send.txt").read()
sent = json.loads(send[send.index("{"):]) if "{" in send else {}
report = {
    "seconds": secs, "samples": samples, "rss_kib_after_warm_up": rss_base,
    "rss_kib_max_after_warm_up": rss_max, "sessions_created": created,
    "sessions_expired": expired, "sessions_ended_at_stop": at_stop,
    "records": kinds, "counters_that_must_stay_zero": zero,
    "packets_sent": sent.get("sent"), "replies": sent.get("replies", {}).get("received"),
    "checks": checks,
}
json.dump(report, open(f"{out}/soak.json", "w"), indent=1)
print(f"soak: {secs} s, {sent.get('sent')} packets sent, {sent.get('replies', {}).get('received')} replies; "
      f"{created} sessions created, {expired} expired, {at_stop} ended at the stop; "
      f"VmRSS {rss_base} KiB after warm-up, at most {rss_max} KiB after")
for name, ok in checks.items():
    print(f"  {'ok  ' if ok else 'FAIL'} {name}")
sys.exit(0 if all(checks.values()) else 1)
EOF
