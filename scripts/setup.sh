#!/usr/bin/env bash
# Installs everything tracenat needs on a fresh Debian machine (run as root). Idempotent:
# packages already present are not fetched again.
set -euo pipefail

# Debian packages: tshark checks checksums of replay output independently in the tests;
# gcc builds the zstd and BLAKE3 C code bundled in their crates. The veth lab (`tracenat lab`)
# drives iproute2 (ip), ethtool (checksum offload off), procps (sysctl) and iputils-ping
# (reachability checks); its tests and the demo fetch pages with curl, and the restart test
# logs them with nginx (a real web server; its service is not started). scripts/bench-e2e.sh
# compares with the kernel's NAT (nftables: nft; conntrack: flush and inspect the table) and
# draws its latency plot with python3 alone (scripts/plot-latency.py: no other module), and
# measures bulk TCP through each NAT with iperf3 (run in the lab's namespaces only; its
# daemon must not start on the host).
# `tracenat lab up --dhcp` runs a real DHCP server (kea-dhcp4-server) in the access
# namespace and a real client (dhclient, isc-dhcp-client) in every subscriber's; the
# RADIUS tests send accounting with radclient (freeradius-utils). Kea's service, like
# nginx's, must not start on the host. The export tests hand IPFIX to a real collector
# (nfdump's nfcapd, read back with nfdump) and syslog to a real rsyslogd, each started by the
# test on loopback ports with its own files; neither service starts on the host. The data-lake
# tests run the attribution SQL of scripts/lake/ in Spark (needs a Java runtime) and DuckDB,
# installed from PyPI into their own virtual environment (python3-venv) below. The clock-step
# test runs the NAT under libfaketime (faketime) and steps its wall clock mid-run; the
# shipped systemd unit is scored with systemd-analyze (systemd), which starts nothing; the
# hostile-traffic test crafts its scans, spoofs, fragments and floods with hping3. The
# slow-disk test puts the log on an ext4 image (e2fsprogs) mounted on a loop device
# (mount, findmnt: util-linux) and on scripts/faultfs.py, a FUSE file system in Python
# (python3-fusepy, which brings libfuse2).
PACKAGES=(tshark iproute2 gcc libc6-dev ethtool procps iputils-ping curl nginx nftables conntrack python3
  iperf3 kea-dhcp4-server isc-dhcp-client freeradius-utils nfdump rsyslog python3-venv
  default-jre-headless faketime systemd hping3 e2fsprogs mount util-linux python3-fusepy)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; the answer does not matter here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
  apt-get update -qq
  # nginx, Kea, iperf3, nfcapd and rsyslogd run only inside the lab's namespaces: Debian's maintainer scripts must
  # not start their services on the host. policy-rc.d answering 101 forbids starting services for the
  # install, and is removed after unless it was there before.
  policy=/usr/sbin/policy-rc.d
  own_policy=false
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=true
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  if $own_policy; then rm -f "$policy"; fi
  ((status == 0)) || exit "$status"
fi

# The Rust toolchain's formatter and linter (present on the build image; added if not).
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

# DuckDB (embedded) and pyspark (Spark in local mode) for scripts/lake/lake.py and its tests,
# pinned, in a virtual environment of their own: Debian's Python is externally managed.
LAKE_VENV=${TRACENAT_LAKE_VENV:-/opt/tracenat-lake}
if ! "$LAKE_VENV/bin/python" -c 'import duckdb, pyspark' 2>/dev/null; then
  echo "setup: installing duckdb and pyspark into $LAKE_VENV"
  python3 -m venv "$LAKE_VENV"
  "$LAKE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check duckdb==2.0.1 pyspark==4.3.0
fi

echo "setup: ok"
