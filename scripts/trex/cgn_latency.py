"""Latency under load: background CGN traffic (IMIX, established flows) plus latency
streams measured by TRex's flow stats (STLFlowLatencyStats: a signature and timestamp in
the payload, so it survives the NAT rewriting addresses and ports). One latency stream per
frame size, pg_id 10, 11, 12, at a fixed low rate each.

    trex-console> start -f scripts/trex/cgn_latency.py -p 0 -m 1 \
                  -t background_pps=2000000,latency_pps=1000
    trex-console> stats -l          # or client.get_pgid_stats([10, 11, 12])
Reports min/avg/max, jitter and the latency histogram per pg_id (one way, port 0 -> 1).
Untested here.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cgn_common import IMIX, base_packet, established_vm  # noqa: E402
from trex_stl_lib.api import (STLStream, STLPktBuilder, STLTXCont, STLProfile,  # noqa: E402
                              STLFlowLatencyStats)


class CgnLatency(object):
    def get_streams(self, direction=0, tunables=None, background_pps=2000000,
                    latency_pps=1000, subscribers=20000, **kwargs):
        if tunables:
            import argparse
            p = argparse.ArgumentParser()
            p.add_argument("--background_pps", type=float, default=background_pps)
            p.add_argument("--latency_pps", type=float, default=latency_pps)
            p.add_argument("--subscribers", type=int, default=subscribers)
            a = p.parse_args(tunables)
            background_pps, latency_pps, subscribers = a.background_pps, a.latency_pps, a.subscribers
        total_weight = sum(w for _, w in IMIX)
        streams = []
        for size, weight in IMIX:
            streams.append(STLStream(
                packet=STLPktBuilder(pkt=base_packet(size),
                                     vm=established_vm(int(subscribers), 8)),
                mode=STLTXCont(pps=float(background_pps) * weight / total_weight)))
        for i, (size, _) in enumerate(IMIX):
            # A fixed 5-tuple per latency stream: one session, set up by its first packet.
            streams.append(STLStream(
                packet=STLPktBuilder(pkt=base_packet(max(size, 64))),
                mode=STLTXCont(pps=float(latency_pps)),
                flow_stats=STLFlowLatencyStats(pg_id=10 + i)))
        return STLProfile(streams).get_streams()


def register():
    return CgnLatency()
