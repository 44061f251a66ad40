-- pktgen-DPDK: CGN traffic toward tracenat. Untested here (no DPDK NIC, no pktgen-DPDK).
--   pktgen -l 0-4 -n 4 -a <PCI port 0> -a <PCI port 1> -- -P -m "[1:2].0, [3:4].1" -f scripts/pktgen/cgn.lua
-- Port 0 faces tracenat's inside interface, port 1 its outside one. Set DST_MAC to the
-- MAC of tracenat's inside interface. Range mode walks subscriber addresses and source
-- ports so each new combination is a new NAT session; the ranges below give 4096
-- subscribers x 1024 ports = 4 M tuples before they repeat.
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

local DST_MAC     = "02:00:00:00:00:01"   -- tracenat inside interface (set this)
local SECONDS     = 10                    -- bounded run
local RATE_PCT    = 100                   -- percent of line rate
local SIZE        = 64                    -- or 594, 1518; IMIX: run three times, 7:4:1

pktgen.stop("all")
pktgen.set("0", "count", 0)
pktgen.set("0", "rate", RATE_PCT)
pktgen.set("0", "size", SIZE)
pktgen.set_proto("0", "udp")
pktgen.set_type("0", "ipv4")

pktgen.range.dst_mac("0", "start", DST_MAC)
pktgen.range.dst_mac("0", "inc", "00:00:00:00:00:00")

pktgen.range.src_ip("0", "start", "100.64.0.1")
pktgen.range.src_ip("0", "inc",   "0.0.0.1")
pktgen.range.src_ip("0", "min",   "100.64.0.1")
pktgen.range.src_ip("0", "max",   "100.64.16.0")

pktgen.range.dst_ip("0", "start", "198.51.100.10")
pktgen.range.dst_ip("0", "inc",   "0.0.0.1")
pktgen.range.dst_ip("0", "min",   "198.51.100.10")
pktgen.range.dst_ip("0", "max",   "198.51.100.73")

-- Source ports advance only when the addresses wrap in pktgen's range walk on some
-- versions and together on others; either way the tuple space is addresses x ports.
pktgen.range.src_port("0", "start", 1024)
pktgen.range.src_port("0", "inc",   1)
pktgen.range.src_port("0", "min",   1024)
pktgen.range.src_port("0", "max",   2047)

pktgen.range.dst_port("0", "start", 443)
pktgen.range.dst_port("0", "inc",   0)
pktgen.range.dst_port("0", "min",   443)
pktgen.range.dst_port("0", "max",   443)

pktgen.range.pkt_size("0", "start", SIZE)
pktgen.range.pkt_size("0", "inc",   0)
pktgen.range.pkt_size("0", "min",   SIZE)
pktgen.range.pkt_size("0", "max",   SIZE)

pktgen.set_range("0", "on")
pktgen.clr()
pktgen.start("0")
pktgen.delay(SECONDS * 1000)
pktgen.stop("0")
pktgen.delay(500)

local s0 = pktgen.portStats("0", "port")[0]
local s1 = pktgen.portStats("1", "port")[1]
printf("port 0 sent %d packets, port 1 received %d (through the NAT), loss %.4f%%\n",
       s0.opackets, s1.ipackets, 100.0 * (s0.opackets - s1.ipackets) / math.max(s0.opackets, 1))
