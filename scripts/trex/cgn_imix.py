"""CGN load: many subscribers (100.64.0.0/10), IMIX 7:4:1, established flows.

    trex-console> start -f scripts/trex/cgn_imix.py -p 0 -m 5mpps \
                  -t subscribers=20000,flows=8,proto=udp
Tunables: subscribers (default 20000), flows per subscriber (8), proto (udp|tcp).
Untested here (no TRex on the development VM).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cgn_common import IMIX, base_packet, established_vm  # noqa: E402
from trex_stl_lib.api import STLStream, STLPktBuilder, STLTXCont, STLProfile  # noqa: E402


class CgnImix(object):
    def get_streams(self, direction=0, tunables=None, subscribers=20000, flows=8,
                    proto="udp", **kwargs):
        if tunables:  # TRex >= 2.9x passes -t as a list of strings
            import argparse
            p = argparse.ArgumentParser()
            p.add_argument("--subscribers", type=int, default=subscribers)
            p.add_argument("--flows", type=int, default=flows)
            p.add_argument("--proto", default=proto)
            a = p.parse_args(tunables)
            subscribers, flows, proto = a.subscribers, a.flows, a.proto
        streams = []
        for size, weight in IMIX:
            streams.append(STLStream(
                packet=STLPktBuilder(pkt=base_packet(size, proto),
                                     vm=established_vm(int(subscribers), int(flows), proto)),
                mode=STLTXCont(pps=weight)))  # -m scales the 7:4:1 weights
        return STLProfile(streams).get_streams()


def register():
    return CgnImix()
