//! Batches: with a million sessions each flow table probe is a cache miss, and so is the
//! session it leads to. Classifying and hashing the whole batch first and prefetching every
//! frame's bucket, then prefetching the sessions those buckets point at, lets the CPU
//! overlap the misses of different frames (VPP's multi-packet loops work the same way); the
//! processing that follows finds everything in cache and reuses what classifying read. A
//! frame whose flow is surely absent will open a session, so the mapping-index bucket that
//! opening probes first is prefetched in its session's place. The warm-up reads only: the
//! verdicts are exactly those of processing the frames one by one.

use super::event::EventSink;
use super::{Engine, Side, Verdict};

/// Most frames classified at once.
pub const MAX_BATCH: usize = 64;
/// Frames between the prefetch of a frame's bucket and of its session, and between that
/// and its processing.
const AHEAD: usize = 8;

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
        let mut classified = [None; MAX_BATCH];
        for start in (0..n).step_by(MAX_BATCH) {
            let end = (start + MAX_BATCH).min(n);
            let batch = &mut classified[..end - start];
            for (i, c) in batch.iter_mut().enumerate() {
                let (buf, len) = frames.frame(start + i);
                *c = self.classify(buf, len.min(buf.len()), from);
            }
            // A software pipeline: frame i's bucket is prefetched 2 × AHEAD frames before it
            // is processed and its session AHEAD frames before, so about 2 × AHEAD misses are
            // in flight at once — what the core can track; prefetching a whole batch at once
            // issued more than that, and the surplus came back late or not at all.
            let at = |i: usize| batch.get(i).and_then(Option::as_ref);
            for i in 0..2 * AHEAD {
                if let Some(e) = at(i) {
                    self.state.prefetch_flow_bucket(e.slot());
                }
            }
            for i in 0..AHEAD {
                if let Some(e) = at(i) {
                    self.state.prefetch_flow_sessions(e.slot(), e.key());
                }
            }
            for (i, classified) in batch.iter().enumerate() {
                if let Some(e) = at(i + 2 * AHEAD) {
                    self.state.prefetch_flow_bucket(e.slot());
                }
                if let Some(e) = at(i + AHEAD) {
                    self.state.prefetch_flow_sessions(e.slot(), e.key());
                }
                let (buf, len) = frames.frame(start + i);
                let len = len.min(buf.len());
                verdicts[start + i] =
                    self.process_classified(buf, len, from, now_ns, classified.as_ref());
            }
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
