//! Handoff between workers: a frame that arrives at a worker that does not own its state
//! (veth, or a NIC whose RSS cannot be aligned) is copied into a lock-free single-producer
//! single-consumer ring to its owner. Every ring is one (from, to) pair, so each has exactly
//! one producer and one consumer; every frame handed off, received or dropped is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::engine::Side;

/// Largest frame carried: a UMEM frame less the kernel's headroom.
pub const MAX_FRAME: usize = 2048 - 256;

/// A frame on its way to its owner, and the side it is to be processed as coming from
/// (a hairpinned packet arrives half translated, "from the outside").
pub struct HandedFrame {
    pub from: Side,
    pub len: u16,
    pub bytes: [u8; MAX_FRAME],
}

/// Counters of one (from, to) ring.
#[derive(Debug, Default)]
pub struct RingStats {
    pub sent: AtomicU64,
    pub dropped_full: AtomicU64,
}

pub struct Ring {
    queue: ArrayQueue<Box<HandedFrame>>,
    /// Empty boxes going back to the producer, so the packet path does not allocate.
    spare: ArrayQueue<Box<HandedFrame>>,
    pub stats: RingStats,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        let spare = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            let _ = spare.push(Box::new(HandedFrame {
                from: Side::Inside,
                len: 0,
                bytes: [0; MAX_FRAME],
            }));
        }
        Ring {
            queue: ArrayQueue::new(capacity),
            spare,
            stats: RingStats::default(),
        }
    }
}

/// All rings between `workers` workers: `ring(from, to)`.
pub struct Rings {
    workers: usize,
    rings: Vec<Arc<Ring>>,
}

impl Rings {
    pub fn new(workers: u16, capacity: usize) -> Rings {
        let workers = workers as usize;
        Rings {
            workers,
            rings: (0..workers * workers)
                .map(|_| Arc::new(Ring::new(capacity)))
                .collect(),
        }
    }

    pub fn ring(&self, from: u16, to: u16) -> Arc<Ring> {
        self.rings[from as usize * self.workers + to as usize].clone()
    }

    /// The rings worker `w` sends on and receives from.
    pub fn ends(&self, w: u16) -> Ends {
        let n = self.workers as u16;
        Ends {
            out: (0..n).map(|to| self.ring(w, to)).collect(),
            inbound: (0..n)
                .filter(|&f| f != w)
                .map(|f| self.ring(f, w))
                .collect(),
            first: 0,
        }
    }

    /// (from, to, sent, dropped) for every pair that saw traffic.
    pub fn totals(&self) -> Vec<(u16, u16, u64, u64)> {
        let n = self.workers as u16;
        (0..n)
            .flat_map(|f| (0..n).map(move |t| (f, t)))
            .filter(|(f, t)| f != t)
            .map(|(f, t)| {
                let s = &self.ring(f, t).stats;
                (
                    f,
                    t,
                    s.sent.load(Ordering::Relaxed),
                    s.dropped_full.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// One worker's view: its outgoing ring to every worker, and its incoming rings.
pub struct Ends {
    out: Vec<Arc<Ring>>,
    inbound: Vec<Arc<Ring>>,
    /// The inbound ring the next [`Ends::receive`] starts with.
    first: usize,
}

impl Ends {
    /// Copies `frame` to worker `to`. False (counted) if that ring is full.
    pub fn send(&self, to: u16, from: Side, frame: &[u8]) -> bool {
        let Some(ring) = self.out.get(to as usize) else {
            return false;
        };
        let len = frame.len().min(MAX_FRAME);
        let Some(mut slot) = ring.spare.pop() else {
            ring.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        slot.from = from;
        slot.len = len as u16;
        slot.bytes[..len].copy_from_slice(&frame[..len]);
        match ring.queue.push(slot) {
            Ok(()) => {
                ring.stats.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(slot) => {
                let _ = ring.spare.push(slot);
                ring.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Calls `take` with each frame waiting for this worker (at most `max`); returns how
    /// many there were. Each call starts at the next sender's ring, so one sender that
    /// always has `max` frames waiting cannot starve the others.
    pub fn receive(&mut self, max: usize, mut take: impl FnMut(&HandedFrame)) -> usize {
        let rings = self.inbound.len();
        let mut n = 0;
        for i in 0..rings {
            let ring = &self.inbound[(self.first + i) % rings];
            while n < max {
                let Some(frame) = ring.queue.pop() else {
                    break;
                };
                take(&frame);
                let _ = ring.spare.push(frame);
                n += 1;
            }
        }
        if rings > 0 {
            self.first = (self.first + 1) % rings;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worker 1 always has a full burst for worker 0; worker 2 sends one frame a round:
    /// all of worker 2's frames get through.
    #[test]
    fn a_busy_sender_does_not_starve_the_others() {
        let rings = Rings::new(3, 1024);
        let (mut w0, w1, w2) = (rings.ends(0), rings.ends(1), rings.ends(2));
        let (mut from_2, rounds) = (0, 100);
        for _ in 0..rounds {
            for _ in 0..64 {
                w1.send(0, Side::Inside, &[1; 60]);
            }
            w2.send(0, Side::Inside, &[2; 60]);
            w0.receive(64, |f| from_2 += usize::from(f.bytes[0] == 2));
        }
        // Every other round starts with worker 2's ring; its frames wait at most a round.
        assert!(
            from_2 >= rounds - 1,
            "{from_2} of {rounds} frames from worker 2"
        );
    }

    #[test]
    fn frames_reach_their_owner_and_a_full_ring_drops_and_counts() {
        let rings = Rings::new(2, 4);
        let (mut a, mut b) = (rings.ends(0), rings.ends(1));
        for i in 0..6u8 {
            let sent = a.send(1, Side::Outside, &[i; 60]);
            assert_eq!(sent, i < 4, "frame {i}");
        }
        let mut got = Vec::new();
        assert_eq!(b.receive(16, |f| got.push((f.from, f.len, f.bytes[0]))), 4);
        assert_eq!(
            got,
            (0..4).map(|i| (Side::Outside, 60, i)).collect::<Vec<_>>()
        );
        assert_eq!(rings.totals(), vec![(0, 1, 4, 2), (1, 0, 0, 0)]);
        // Spare boxes came back: the ring works again.
        assert!(a.send(1, Side::Inside, &[9; 1]));
        assert_eq!(a.receive(16, |_| panic!("nothing for worker 0")), 0);
    }
}
