//! Batches: with a million sessions each flow table probe is a cache miss, and so is the
//! session it leads to. Hashing the whole batch first and prefetching every frame's bucket,
//! then prefetching the sessions those buckets point at, lets the CPU overlap the misses of
//! different frames (VPP's multi-packet loops work the same way); the processing that
//! follows finds everything in cache. The warm-up only reads: the verdicts are exactly those
//! of processing the frames one by one.

use super::event::EventSink;
use super::ports::Proto;
use super::state::FlowKey;
use super::{Engine, Side, Verdict};
use crate::wire::{ethernet, icmp, ipv4};

/// Most frames warmed up at once (the hardware overlaps about this many misses).
pub const MAX_BATCH: usize = 64;

/// A batch of frames, each a buffer (with room after the frame for a longer reply) and
/// the frame's length. Slices implement it; the dataplane implements it over its UMEM.
pub trait Frames {
    fn count(&self) -> usize;
    fn frame(&mut self, i: usize) -> (&mut [u8], usize);
}

impl Frames for [(&mut [u8], usize)] {
    fn count(&self) -> usize {
        self.len()
    }
    fn frame(&mut self, i: usize) -> (&mut [u8], usize) {
        let (buf, len) = &mut self[i];
        (buf, *len)
    }
}

/// The flow key of an unfragmented TCP, UDP or ICMP echo packet, or of a first fragment;
/// `None` for anything else (it is processed without warm-up).
fn probe(frame: &[u8], from: Side) -> Option<FlowKey> {
    let l2 = ethernet::parse_l2(frame).ok()?;
    if l2.ethertype != ethernet::EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
    if ip.frag_offset() > 0 {
        return None;
    }
    let proto = Proto::from_ip_protocol(ip.protocol())?;
    let l4 = ip.payload();
    let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
    let port_at = |at: usize| l4.get(at..at + 2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    let (sport, dport) = match proto {
        Proto::Icmp => {
            let kind = icmp::Packet::new_checked(l4).ok()?.kind();
            let ident = port_at(4)?;
            match (kind, from) {
                (icmp::Kind::EchoRequest, Side::Inside) => (ident, 0),
                (icmp::Kind::EchoReply, Side::Outside) => (0, ident),
                _ => return None,
            }
        }
        _ => (port_at(0)?, port_at(2)?),
    };
    let (local, remote) = match from {
        Side::Inside => ((src, sport), (dst, dport)),
        Side::Outside => ((dst, dport), (src, sport)),
    };
    Some(FlowKey {
        proto,
        from,
        local_ip: local.0,
        local_port: local.1,
        remote_ip: remote.0,
        remote_port: remote.1,
    })
}

impl<S: EventSink> Engine<S> {
    /// Translates a batch of frames received from `from` at `now_ns`, in place, exactly as
    /// [`Engine::process`] would one by one; `verdicts[i]` is frame i's. Frames are
    /// `(buffer, length)`; at most [`MAX_BATCH`] are warmed up together.
    pub fn process_batch<F: Frames + ?Sized>(
        &mut self,
        frames: &mut F,
        from: Side,
        now_ns: u64,
        verdicts: &mut [Verdict],
    ) {
        let n = frames.count().min(verdicts.len());
        for start in (0..n).step_by(MAX_BATCH) {
            let end = (start + MAX_BATCH).min(n);
            self.warm_up(frames, start..end, from);
            for (i, verdict) in verdicts.iter_mut().enumerate().take(end).skip(start) {
                let (buf, len) = frames.frame(i);
                *verdict = self.process(buf, len, from, now_ns);
            }
        }
    }

    /// Starts loading what the frames will need: every frame's flow table bucket, then the
    /// sessions those buckets hold under the frame's tag.
    fn warm_up<F: Frames + ?Sized>(
        &self,
        frames: &mut F,
        range: std::ops::Range<usize>,
        from: Side,
    ) {
        let mut slots = [None; MAX_BATCH];
        for (slot, i) in slots.iter_mut().zip(range) {
            let (buf, len) = frames.frame(i);
            if let Some(key) = probe(&buf[..len.min(buf.len())], from) {
                let at = self.state.flow_slot(&key);
                self.state.prefetch_flow_bucket(at);
                *slot = Some(at);
            }
        }
        for at in slots.iter().flatten() {
            self.state.prefetch_flow_sessions(*at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::event::VecSink;
    use crate::workload;

    #[test]
    fn a_batch_gives_the_verdicts_and_bytes_of_one_by_one() {
        let cfg = Config::from_toml_str(
            "[interfaces]\ninside = \"a\"\noutside = \"b\"\n\
             [pool]\npublic = [\"203.0.113.0/30\"]\nsubscribers = [\"100.64.0.0/16\"]\n",
        )
        .unwrap();
        let flows = workload::flows(std::net::Ipv4Addr::new(100, 64, 0, 1), 20, 8, 1);
        let frames: Vec<Vec<u8>> = flows.iter().map(workload::min_frame).collect();
        let mut one = Engine::for_all_workers(&cfg, 1, |_| VecSink::default()).remove(0);
        let mut many = Engine::for_all_workers(&cfg, 1, |_| VecSink::default()).remove(0);
        for round in 0..3u64 {
            let mut singles: Vec<Vec<u8>> = frames.iter().map(|f| padded(f)).collect();
            let expected: Vec<Verdict> = singles
                .iter_mut()
                .map(|f| one.process(f, frames[0].len(), Side::Inside, round))
                .collect();
            let mut batch: Vec<Vec<u8>> = frames.iter().map(|f| padded(f)).collect();
            let mut refs: Vec<(&mut [u8], usize)> = batch
                .iter_mut()
                .zip(&frames)
                .map(|(b, f)| (&mut b[..], f.len()))
                .collect();
            let mut verdicts = vec![Verdict::ToKernel; refs.len()];
            many.process_batch(&mut refs[..], Side::Inside, round, &mut verdicts);
            assert_eq!(verdicts, expected, "round {round}");
            assert_eq!(batch, singles, "round {round}");
        }
        assert_eq!(one.sink().events, many.sink().events);
    }

    fn padded(frame: &[u8]) -> Vec<u8> {
        let mut v = frame.to_vec();
        v.resize(2048, 0);
        v
    }
}
