#!/usr/bin/env bash
# CGN traffic with the Linux kernel's packet generator (/proc/net/pktgen): 64-byte (or
# --size) UDP from many subscribers of 100.64.0.0/10 (random source address and port in a
# range, so new 5-tuples = new NAT sessions) to servers of 198.51.100.0/24, a bounded count.
#
#   scripts/pktgen/kernel-pktgen.sh --dev IF --dst-mac MAC [--count 1000000] [--pps 0]
#       [--size 64] [--subscribers 100.64.0.1-100.64.3.255] [--sports 1024-65535]
#       [--servers 198.51.100.10-198.51.100.73] [--dport 443] [--threads 1]
#
# --pps 0 = as fast as the kernel can. Run it in the namespace (or on the host) that owns
# --dev; in the veth lab: ip netns exec tn-access scripts/pktgen/kernel-pktgen.sh
#   --dev tn-in-peer --dst-mac "$(ip netns exec tn-nat cat /sys/class/net/tn-in/address)"
# pktgen needs the module (modprobe pktgen) and root. Prints pktgen's own result line.
set -euo pipefail
DEV=; DST_MAC=; COUNT=1000000; PPS=0; SIZE=64; SUBS=100.64.0.1-100.64.3.255
SPORTS=1024-65535; SERVERS=198.51.100.10-198.51.100.73; DPORT=443; THREADS=1
while (($#)); do
  case "$1" in
    --dev) DEV=$2 ;; --dst-mac) DST_MAC=$2 ;; --count) COUNT=$2 ;; --pps) PPS=$2 ;;
    --size) SIZE=$2 ;; --subscribers) SUBS=$2 ;; --sports) SPORTS=$2 ;;
    --servers) SERVERS=$2 ;; --dport) DPORT=$2 ;; --threads) THREADS=$2 ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
  shift 2
done
[[ -n $DEV && -n $DST_MAC ]] || { sed -n '2,14p' "$0"; exit 2; }
modprobe pktgen 2>/dev/null || true
[[ -e /proc/net/pktgen/pgctrl ]] || { echo "kernel-pktgen: no /proc/net/pktgen (CONFIG_NET_PKTGEN)" >&2; exit 1; }

pg() { # pg FILE COMMAND: write a command and fail on pktgen's "Result: ERROR"
  echo "$2" >"$1"
  if grep -q "Result: ERROR\|Result: No such" "$1" 2>/dev/null; then
    echo "kernel-pktgen: $1: $2: $(grep Result "$1")" >&2; exit 1
  fi
}
stop() { echo stop >/proc/net/pktgen/pgctrl 2>/dev/null || true; }
trap stop EXIT INT TERM

per_thread=$(( COUNT / THREADS ))
for ((t = 0; t < THREADS; t++)); do
  kt=/proc/net/pktgen/kpktgend_$t
  [[ -e $kt ]] || { echo "kernel-pktgen: no $kt (fewer CPUs than --threads)" >&2; exit 1; }
  pg "$kt" rem_device_all
  name="$DEV@$t"
  pg "$kt" "add_device $name"
  d=/proc/net/pktgen/$name
  pg "$d" "count $per_thread"
  pg "$d" "pkt_size $(( SIZE - 4 ))"       # pktgen's size excludes the FCS
  pg "$d" "clone_skb 0"                     # a fresh skb per packet: fields really vary
  pg "$d" "burst 1"
  pg "$d" "delay 0"
  (( PPS > 0 )) && pg "$d" "ratep $(( PPS / THREADS ))"
  pg "$d" "dst_mac $DST_MAC"
  pg "$d" "src_min ${SUBS%-*}"
  pg "$d" "src_max ${SUBS#*-}"
  pg "$d" "dst_min ${SERVERS%-*}"
  pg "$d" "dst_max ${SERVERS#*-}"
  pg "$d" "udp_src_min ${SPORTS%-*}"
  pg "$d" "udp_src_max ${SPORTS#*-}"
  pg "$d" "udp_dst_min $DPORT"
  pg "$d" "udp_dst_max $DPORT"
  pg "$d" "flag IPSRC_RND"
  pg "$d" "flag UDPSRC_RND"
  pg "$d" "flag UDPCSUM"                    # a complete UDP checksum (the NAT verifies)
  pg "$d" "queue_map_min $t"
  pg "$d" "queue_map_max $t"
done
echo "kernel-pktgen: $COUNT packets of $SIZE B on $DEV -> $DST_MAC, sources $SUBS ports $SPORTS"
echo start >/proc/net/pktgen/pgctrl
trap - EXIT
for ((t = 0; t < THREADS; t++)); do
  grep -A2 "^Result" "/proc/net/pktgen/$DEV@$t" | sed "s/^/  [$t] /"
  echo rem_device_all >/proc/net/pktgen/kpktgend_$t
done
