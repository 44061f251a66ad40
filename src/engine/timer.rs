//! Session expiry: a hashed timing wheel with lazy re-scheduling.
//!
//! Refreshing a session on a packet only writes its `expires_at`; the wheel is not touched,
//! so the per-packet cost is O(1) and branch-free. When a slot comes due, each entry is
//! checked: still idle past its deadline → expired; refreshed → moved to the slot of its new
//! deadline. Shortening a deadline (RST, FIN) adds a second, earlier entry; the older one is
//! recognised as stale by the session's `scheduled_tick`.

/// One scheduled check: the session slot index and its generation when scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub index: u32,
    pub generation: u32,
}

/// Ticks of 1/8 s: fine enough that timeouts land within 125 ms of their deadline.
pub const TICK_NS: u64 = 125_000_000;
/// 2^16 ticks = 8192 s ≈ 2 h 16 min, above the 2 h 4 min TCP default; longer deadlines are
/// parked at the horizon and re-scheduled when it comes.
const SLOTS: usize = 1 << 16;

pub fn tick_of(ns: u64) -> u64 {
    ns.div_ceil(TICK_NS)
}

/// The tick an entry with `deadline_ns` is placed at when the wheel stands at `current`:
/// its deadline's tick, kept within the wheel's horizon.
pub fn placement(current: u64, deadline_ns: u64) -> u64 {
    tick_of(deadline_ns).clamp(current + 1, current + SLOTS as u64 - 1)
}

#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// The last tick whose slot has been processed.
    current: u64,
    /// Re-used buffer for the slot being drained (no allocation per tick after warm-up).
    draining: Vec<Entry>,
}

/// What the owner of the sessions decides for a due entry.
pub enum Due {
    /// Expire it now.
    Expire,
    /// Still alive: check again at this deadline (ns).
    Reschedule(u64),
    /// Stale entry (session gone or re-scheduled earlier): forget it.
    Ignore,
}

impl TimerWheel {
    pub fn new(now_ns: u64) -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            current: now_ns / TICK_NS,
            draining: Vec::new(),
        }
    }

    /// Schedules a check at `deadline_ns`; returns the tick it was placed at.
    pub fn schedule(&mut self, entry: Entry, deadline_ns: u64) -> u64 {
        let tick = placement(self.current, deadline_ns);
        self.slots[(tick as usize) & (SLOTS - 1)].push(entry);
        tick
    }

    /// Processes every slot up to `now_ns`, asking `decide` about each entry.
    /// `decide(entry, tick)` sees the tick the slot stands for.
    pub fn advance(&mut self, now_ns: u64, mut decide: impl FnMut(Entry, u64) -> Due) -> usize {
        let target = now_ns / TICK_NS;
        let mut expired = 0;
        while self.current < target {
            // A jump longer than the wheel visits each slot once: everything due is expired
            // and the rest re-scheduled relative to `now`.
            let tick = if target - self.current > SLOTS as u64 {
                self.current = target - SLOTS as u64;
                self.current + 1
            } else {
                self.current + 1
            };
            self.current = tick;
            let slot = (tick as usize) & (SLOTS - 1);
            std::mem::swap(&mut self.slots[slot], &mut self.draining);
            let mut draining = std::mem::take(&mut self.draining);
            for entry in draining.drain(..) {
                match decide(entry, tick) {
                    Due::Expire => expired += 1,
                    Due::Reschedule(deadline) => {
                        let new_tick = self.schedule(entry, deadline);
                        debug_assert!(new_tick > tick);
                    }
                    Due::Ignore => {}
                }
            }
            self.draining = draining;
        }
        expired
    }

    /// The tick up to which slots have been processed.
    pub fn current_tick(&self) -> u64 {
        self.current
    }

    /// Heap bytes held by the wheel (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Vec<Entry>>()
            + self
                .slots
                .iter()
                .map(|s| s.capacity() * std::mem::size_of::<Entry>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// A model: deadlines per index, entries checked against them.
    fn run(deadlines: &mut [u64], now: u64, wheel: &mut TimerWheel, expired: &mut Vec<u32>) {
        wheel.advance(now, |e, _tick| {
            let d = deadlines[e.index as usize];
            if d == u64::MAX {
                Due::Ignore
            } else if d <= now {
                deadlines[e.index as usize] = u64::MAX;
                expired.push(e.index);
                Due::Expire
            } else {
                Due::Reschedule(d)
            }
        });
    }

    #[test]
    fn expires_at_deadline_not_before_and_refresh_postpones() {
        let mut w = TimerWheel::new(0);
        let mut deadlines = vec![300 * S, 60 * S];
        w.schedule(
            Entry {
                index: 0,
                generation: 0,
            },
            deadlines[0],
        );
        w.schedule(
            Entry {
                index: 1,
                generation: 0,
            },
            deadlines[1],
        );
        let mut expired = vec![];
        run(&mut deadlines, 59 * S, &mut w, &mut expired);
        assert!(expired.is_empty());
        deadlines[1] = 120 * S; // refreshed: lazily moves when its old slot comes
        run(&mut deadlines, 61 * S, &mut w, &mut expired);
        assert!(expired.is_empty());
        run(&mut deadlines, 120 * S, &mut w, &mut expired);
        assert_eq!(expired, vec![1]);
        run(&mut deadlines, 299 * S, &mut w, &mut expired);
        assert_eq!(expired, vec![1]);
        run(&mut deadlines, 300 * S, &mut w, &mut expired);
        assert_eq!(expired, vec![1, 0]);
    }

    #[test]
    fn deadlines_beyond_the_horizon_and_long_jumps() {
        let mut w = TimerWheel::new(0);
        let mut deadlines = vec![7440 * S, 20_000 * S];
        w.schedule(
            Entry {
                index: 0,
                generation: 0,
            },
            deadlines[0],
        );
        w.schedule(
            Entry {
                index: 1,
                generation: 0,
            },
            deadlines[1],
        );
        let mut expired = vec![];
        run(&mut deadlines, 7439 * S, &mut w, &mut expired);
        assert!(expired.is_empty());
        run(&mut deadlines, 7441 * S, &mut w, &mut expired);
        assert_eq!(expired, vec![0]);
        run(&mut deadlines, 19_999 * S, &mut w, &mut expired);
        assert_eq!(expired, vec![0]);
        // One jump of days: still exactly once.
        run(&mut deadlines, 900_000 * S, &mut w, &mut expired);
        assert_eq!(expired, vec![0, 1]);
    }
}
