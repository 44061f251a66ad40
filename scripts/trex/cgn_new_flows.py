"""New sessions per second: every packet a new 5-tuple (subscriber address x source port
from TRex's tuple generator), 64-byte UDP (or TCP SYN with proto=tcp).

    trex-console> start -f scripts/trex/cgn_new_flows.py -p 0 -m 1mpps \
                  -t subscribers=65536,proto=udp
Sessions created per second = the NAT's counter (tracenat stats:
tracenat_events_total{event="sessions_created"}) over the run; compare with the packets
TRex received on port 1. Keep runs shorter than subscribers x 64512 / rate, or tuples repeat.
Untested here.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cgn_common import base_packet, new_flows_vm  # noqa: E402
from trex_stl_lib.api import STLStream, STLPktBuilder, STLTXCont, STLProfile  # noqa: E402
from trex_stl_lib.api import Ether, IP, TCP  # noqa: E402
from cgn_common import SUBSCRIBER_FIRST, SERVERS_FIRST, SERVER_PORT  # noqa: E402


class CgnNewFlows(object):
    def get_streams(self, direction=0, tunables=None, subscribers=65536, proto="udp",
                    **kwargs):
        if tunables:
            import argparse
            p = argparse.ArgumentParser()
            p.add_argument("--subscribers", type=int, default=subscribers)
            p.add_argument("--proto", default=proto)
            a = p.parse_args(tunables)
            subscribers, proto = a.subscribers, a.proto
        if proto == "tcp":
            pkt = Ether() / IP(src=SUBSCRIBER_FIRST, dst=SERVERS_FIRST) / \
                TCP(sport=1024, dport=SERVER_PORT, flags="S")
        else:
            pkt = base_packet(60, "udp")
        return STLProfile([STLStream(
            packet=STLPktBuilder(pkt=pkt, vm=new_flows_vm(int(subscribers), proto)),
            mode=STLTXCont(pps=1))]).get_streams()


def register():
    return CgnNewFlows()
