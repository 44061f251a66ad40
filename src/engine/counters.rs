//! Counters: every packet the engine sees ends up in exactly one outcome counter, and every
//! drop names its reason, so an operator can tell why a packet died.

use crate::wire::WireError;

/// Why a packet was dropped. Each variant is one counter; `reason as usize` is its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    MalformedTruncated,
    MalformedBadVersion,
    MalformedBadHeaderLength,
    MalformedBadTotalLength,
    MalformedBadLength,
    MalformedUnsupportedVlan,
    BadIpChecksum,
    /// IP protocol other than TCP, UDP or ICMP.
    UnsupportedProtocol,
    /// ICMP type the NAT does not translate (neither echo nor a supported error).
    UnsupportedIcmp,
    /// Broadcast or multicast destination.
    NotUnicast,
    /// Outbound packet whose source is not in a subscriber prefix (anti-spoofing).
    SourceNotSubscriber,
    /// Inbound packet to an address that is neither in the pool nor the NAT's own.
    NotInPool,
    /// Inbound packet matching no mapping: unsolicited.
    NoMapping,
    /// Inbound packet matching a mapping but refused by address-and-port-dependent filtering.
    Filtered,
    PortsExhausted,
    SubscriberSessionLimit,
    SubscriberPortLimit,
    SessionTableFull,
    /// The mapping log could not accept the creation event.
    LogBackpressure,
    TtlExpired,
    FragmentOutOfOrder,
    FragmentTableFull,
    /// First fragment too short to carry the transport ports (RFC 1858).
    TinyFragment,
    /// ICMP error whose embedded packet matches no live session.
    IcmpErrorNoSession,
    HairpinDisabled,
    /// Outbound TCP packet that cannot open a session (RST without a session).
    TcpNoSession,
    /// The state this packet needs belongs to a worker that is not known.
    NotOwner,
}

impl DropReason {
    pub const ALL: [DropReason; 27] = [
        DropReason::MalformedTruncated,
        DropReason::MalformedBadVersion,
        DropReason::MalformedBadHeaderLength,
        DropReason::MalformedBadTotalLength,
        DropReason::MalformedBadLength,
        DropReason::MalformedUnsupportedVlan,
        DropReason::BadIpChecksum,
        DropReason::UnsupportedProtocol,
        DropReason::UnsupportedIcmp,
        DropReason::NotUnicast,
        DropReason::SourceNotSubscriber,
        DropReason::NotInPool,
        DropReason::NoMapping,
        DropReason::Filtered,
        DropReason::PortsExhausted,
        DropReason::SubscriberSessionLimit,
        DropReason::SubscriberPortLimit,
        DropReason::SessionTableFull,
        DropReason::LogBackpressure,
        DropReason::TtlExpired,
        DropReason::FragmentOutOfOrder,
        DropReason::FragmentTableFull,
        DropReason::TinyFragment,
        DropReason::IcmpErrorNoSession,
        DropReason::HairpinDisabled,
        DropReason::TcpNoSession,
        DropReason::NotOwner,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name (counter names, JSON keys).
    pub fn name(self) -> String {
        snake_case(&format!("{self:?}"))
    }
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DropReason::MalformedTruncated,
            WireError::BadVersion => DropReason::MalformedBadVersion,
            WireError::BadHeaderLength => DropReason::MalformedBadHeaderLength,
            WireError::BadTotalLength => DropReason::MalformedBadTotalLength,
            WireError::BadLength => DropReason::MalformedBadLength,
            WireError::UnsupportedVlan => DropReason::MalformedUnsupportedVlan,
        }
    }
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Things that happened to packets and state, other than drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activity {
    RxInside,
    RxOutside,
    TxInside,
    TxOutside,
    /// ARP, IPv6, non-IP, or traffic addressed to the NAT itself.
    ToKernel,
    /// Packet belongs to another worker's state.
    HandedOff,
    Hairpinned,
    SessionsCreated,
    SessionsExpired,
    MappingsCreated,
    IcmpErrorsTranslated,
    FragmentsTranslated,
    TimeExceededSent,
    /// ICMP time-exceeded suppressed by the rate limit.
    TimeExceededRateLimited,
    /// Refusals logged in their interval's summary record rather than one by one.
    RefusalsAggregated,
}

impl Activity {
    pub const ALL: [Activity; 15] = [
        Activity::RxInside,
        Activity::RxOutside,
        Activity::TxInside,
        Activity::TxOutside,
        Activity::ToKernel,
        Activity::HandedOff,
        Activity::Hairpinned,
        Activity::SessionsCreated,
        Activity::SessionsExpired,
        Activity::MappingsCreated,
        Activity::IcmpErrorsTranslated,
        Activity::FragmentsTranslated,
        Activity::TimeExceededSent,
        Activity::TimeExceededRateLimited,
        Activity::RefusalsAggregated,
    ];

    pub fn name(self) -> String {
        snake_case(&format!("{self:?}"))
    }
}

/// Per-worker counters: plain integers, owned by one worker, no atomics on the packet path.
#[derive(Debug, Clone)]
pub struct Counters {
    drops: [u64; DropReason::COUNT],
    events: [u64; Activity::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::COUNT],
            events: [0; Activity::ALL.len()],
        }
    }
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
    #[inline]
    pub fn count(&mut self, activity: Activity) {
        self.events[activity as usize] += 1;
    }
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    pub fn get(&self, activity: Activity) -> u64 {
        self.events[activity as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters into these (for totals).
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.events.iter_mut().zip(other.events.iter()) {
            *a += b;
        }
    }

    /// Every counter by name, drops prefixed with `drop_`, in a stable order.
    pub fn named(&self) -> Vec<(String, u64)> {
        let events = Activity::ALL.iter().map(|e| (e.name(), self.get(*e)));
        let drops = DropReason::ALL
            .iter()
            .map(|&r| (format!("drop_{}", r.name()), self.drops(r)));
        events.chain(drops).collect()
    }

    /// A JSON object of every counter.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .named()
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v)))
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_has_its_own_counter() {
        let mut c = Counters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
            c.drop(*r);
        }
        assert!(DropReason::ALL.iter().all(|r| c.drops(*r) == 1));
        let names: std::collections::HashSet<_> = c.named().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), DropReason::COUNT + Activity::ALL.len());
        assert!(names.contains("drop_no_mapping"));
        assert!(names.contains("time_exceeded_sent"));
    }
}
