"""Shared pieces of the CGN profiles: addresses from the lab's documentation ranges and
the field-engine programs. TRex STL (trex_stl_lib). Untested here: no TRex, no DPDK NIC.

Port 0 faces tracenat's inside interface, port 1 its outside interface. Frames leave
port 0 from subscribers of 100.64.0.0/10 toward servers of 198.51.100.0/24 and arrive on
port 1 with a source from the public pool (203.0.113.0/24).
"""

from trex_stl_lib.api import (Ether, IP, UDP, TCP, STLVmFlowVar, STLVmWrFlowVar,
                              STLVmTupleGen, STLVmFixChecksumHw, CTRexVmInsFixHwCs,
                              STLScVmRaw)

SUBSCRIBER_FIRST = "100.64.0.1"
SERVERS_FIRST = "198.51.100.10"
SERVERS_LAST = "198.51.100.73"     # 64 servers
SERVER_PORT = 443

# IMIX 7:4:1 of 64/594/1518 bytes on the wire (60/590/1514 without the FCS).
IMIX = [(60, 7), (590, 4), (1514, 1)]


def subscriber_last(count):
    """The last of `count` consecutive subscriber addresses from 100.64.0.1."""
    base = (100 << 24) | (64 << 16) | 1
    last = base + count - 1
    if last > ((100 << 24) | (127 << 16) | (255 << 8) | 254):
        raise ValueError("more subscribers than 100.64.0.0/10 holds")
    return "%d.%d.%d.%d" % (last >> 24, (last >> 16) & 255, (last >> 8) & 255, last & 255)


def base_packet(size, proto="udp"):
    l4 = UDP(sport=10000, dport=SERVER_PORT) if proto == "udp" else \
        TCP(sport=10000, dport=SERVER_PORT, flags="A")
    pkt = Ether() / IP(src=SUBSCRIBER_FIRST, dst=SERVERS_FIRST, ttl=64) / l4
    pad = max(0, size - len(pkt))
    return pkt / ("x" * pad)


def fix_checksums(proto):
    """Hardware-completed IPv4 and L4 checksums after the writes (the NAT checks them)."""
    return STLVmFixChecksumHw(l3_offset="IP", l4_offset="UDP" if proto == "udp" else "TCP",
                              l4_type=CTRexVmInsFixHwCs.L4_TYPE_UDP if proto == "udp"
                              else CTRexVmInsFixHwCs.L4_TYPE_TCP)


def established_vm(subscribers, flows_each, proto="udp"):
    """A fixed population of flows: subscribers x flows_each 5-tuples, cycled. After the
    first pass every packet hits an existing session (the established fast path)."""
    l4 = "UDP" if proto == "udp" else "TCP"
    return STLScVmRaw([
        STLVmFlowVar(name="sub", min_value=SUBSCRIBER_FIRST,
                     max_value=subscriber_last(subscribers), size=4, op="inc"),
        STLVmFlowVar(name="sport", min_value=10000, max_value=10000 + flows_each - 1,
                     size=2, op="inc", step=1),
        STLVmFlowVar(name="server", min_value=SERVERS_FIRST, max_value=SERVERS_LAST,
                     size=4, op="random"),
        STLVmWrFlowVar(fv_name="sub", pkt_offset="IP.src"),
        STLVmWrFlowVar(fv_name="sport", pkt_offset=l4 + ".sport"),
        STLVmWrFlowVar(fv_name="server", pkt_offset="IP.dst"),
        fix_checksums(proto),
    ], cache_size=255 if subscribers * flows_each <= 255 else 0)


def new_flows_vm(subscribers, proto="udp"):
    """Every packet a new 5-tuple until the (address, port) space wraps: TRex's tuple
    generator walks subscriber addresses and source ports 1024..65535, so each packet
    makes the NAT create a session (until the tuple space repeats: subscribers x 64512
    packets)."""
    l4 = "UDP" if proto == "udp" else "TCP"
    return STLScVmRaw([
        STLVmTupleGen(name="t", ip_min=SUBSCRIBER_FIRST, ip_max=subscriber_last(subscribers),
                      port_min=1024, port_max=65535, limit_flows=0),
        STLVmWrFlowVar(fv_name="t.ip", pkt_offset="IP.src"),
        STLVmWrFlowVar(fv_name="t.port", pkt_offset=l4 + ".sport"),
        fix_checksums(proto),
    ])
