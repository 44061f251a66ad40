//! Flows: subscribers × flows per subscriber toward a list of servers, each a 5-tuple in
//! a slot, and the schedule that replaces slots with new 5-tuples (new source ports), so
//! that the NAT creates a session for each.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::frames::Tuple;
use super::queue_for_subscriber;

/// The first source port of a subscriber's flows.
pub const FIRST_PORT: u16 = 10_000;
/// Source ports of new flows cycle through this range.
pub const PORT_RANGE: std::ops::RangeInclusive<u16> = 1024..=65535;

/// One active flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub tuple: Tuple,
    /// The tx queue: the NAT worker that owns the subscriber.
    pub queue: u16,
    /// Unique per 5-tuple of the run (in the stamp).
    pub flow: u32,
    /// The next sequence number.
    pub seq: u32,
}

/// Every active flow, and where new ones come from.
#[derive(Debug, Clone)]
pub struct FlowTable {
    pub slots: Vec<Slot>,
    /// Next source port per subscriber.
    next_port: Vec<u16>,
    flows_each: u32,
    next_flow: u32,
    /// The next slot a new flow replaces (round robin).
    next_renew: usize,
}

impl FlowTable {
    /// `subscribers` consecutive addresses from `base`, each with `flows_each` flows from
    /// ports 10000.. toward `servers`, dealt round robin.
    pub fn new(
        base: Ipv4Addr,
        subscribers: u32,
        flows_each: u32,
        servers: &[SocketAddrV4],
        queues: u16,
    ) -> Result<FlowTable, String> {
        if subscribers == 0 || flows_each == 0 || servers.is_empty() {
            return Err("need at least one subscriber, one flow and one server".into());
        }
        let span = u32::from(*PORT_RANGE.end() - *PORT_RANGE.start());
        if flows_each >= span / 2 || u32::from(FIRST_PORT) + flows_each > 65_535 {
            return Err(format!("--flows {flows_each}: too many per subscriber"));
        }
        if u32::from(base).checked_add(subscribers - 1).is_none() {
            return Err("--subscribers runs past 255.255.255.255".into());
        }
        let mut slots = Vec::with_capacity((subscribers * flows_each) as usize);
        for s in 0..subscribers {
            let ip = Ipv4Addr::from(u32::from(base) + s);
            for f in 0..flows_each {
                let i = slots.len();
                slots.push(Slot {
                    tuple: Tuple {
                        src: SocketAddrV4::new(ip, FIRST_PORT + f as u16),
                        dst: servers[i % servers.len()],
                    },
                    queue: queue_for_subscriber(ip, queues),
                    flow: i as u32,
                    seq: 0,
                });
            }
        }
        let next = FIRST_PORT + flows_each as u16;
        Ok(FlowTable {
            next_port: vec![next; subscribers as usize],
            next_flow: slots.len() as u32,
            slots,
            flows_each,
            next_renew: 0,
        })
    }

    /// Flows started so far (the initial ones and every replacement).
    pub fn flows_started(&self) -> u64 {
        u64::from(self.next_flow)
    }

    /// Replaces the next slot (round robin) with a new flow: same subscriber and server, a
    /// new source port, a new flow id, sequence 0. Returns the slot and its new port.
    /// Ports of a subscriber's live flows are a window of consecutive ports in the cycle,
    /// so the new one never collides with them.
    pub fn renew(&mut self) -> (usize, u16) {
        let i = self.next_renew;
        self.next_renew = (i + 1) % self.slots.len();
        let s = i / self.flows_each as usize;
        let port = self.next_port[s];
        self.next_port[s] = if port == *PORT_RANGE.end() {
            *PORT_RANGE.start()
        } else {
            port + 1
        };
        let slot = &mut self.slots[i];
        slot.tuple.src.set_port(port);
        slot.flow = self.next_flow;
        slot.seq = 0;
        self.next_flow = self.next_flow.wrapping_add(1);
        (i, port)
    }
}

/// When new flows start: `rate` per second from `start_ns`.
#[derive(Debug, Clone)]
pub struct NewFlowSchedule {
    per_ns: f64,
    start_ns: u64,
    done: u64,
}

impl NewFlowSchedule {
    pub fn new(rate: f64, start_ns: u64) -> NewFlowSchedule {
        NewFlowSchedule {
            per_ns: rate.max(0.0) / 1e9,
            start_ns,
            done: 0,
        }
    }

    /// How many new flows are due at `now_ns` (and counts them as started).
    pub fn due(&mut self, now_ns: u64) -> u64 {
        if self.per_ns <= 0.0 {
            return 0;
        }
        let target = (now_ns.saturating_sub(self.start_ns) as f64 * self.per_ns) as u64;
        let n = target.saturating_sub(self.done);
        self.done += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7)
    }

    #[test]
    fn slots_cover_subscribers_times_flows_with_distinct_tuples() {
        let servers = [
            server(),
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 20), 9),
        ];
        let t = FlowTable::new(Ipv4Addr::new(100, 64, 2, 1), 4, 3, &servers, 2).unwrap();
        assert_eq!(t.slots.len(), 12);
        let set: std::collections::HashSet<_> = t.slots.iter().map(|s| s.tuple).collect();
        assert_eq!(set.len(), 12);
        for s in &t.slots {
            assert_eq!(s.queue, queue_for_subscriber(*s.tuple.src.ip(), 2));
        }
        assert_eq!(t.slots[1].tuple.dst, servers[1]);
        assert_eq!(*t.slots[11].tuple.src.ip(), Ipv4Addr::new(100, 64, 2, 4));
    }

    #[test]
    fn renewals_make_new_tuples_that_never_collide() {
        let mut t = FlowTable::new(Ipv4Addr::new(100, 64, 2, 1), 2, 5, &[server()], 1).unwrap();
        for _ in 0..200_000 {
            let (i, port) = t.renew();
            assert_eq!(t.slots[i].tuple.src.port(), port);
            let s = i / 5;
            let live: std::collections::HashSet<u16> = t.slots[s * 5..s * 5 + 5]
                .iter()
                .map(|x| x.tuple.src.port())
                .collect();
            assert_eq!(live.len(), 5, "ports of a subscriber stay distinct");
        }
        assert_eq!(t.flows_started(), 10 + 200_000);
    }

    #[test]
    fn the_schedule_starts_flows_at_its_rate() {
        let mut s = NewFlowSchedule::new(1000.0, 5);
        let mut total = 0;
        for ms in 0..=1000u64 {
            total += s.due(5 + ms * 1_000_000);
        }
        assert_eq!(total, 1000);
        assert_eq!(NewFlowSchedule::new(0.0, 0).due(u64::MAX), 0);
    }
}
