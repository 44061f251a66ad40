//! Session expiry: a hashed timing wheel with lazy re-scheduling.
//!
//! Refreshing a session on a packet only writes its deadline; the wheel is not touched, so
//! the per-packet cost is O(1). When a slot comes due, each entry is checked: still idle
//! past its deadline → expired; refreshed → moved to the slot of its new deadline.
//! Shortening a deadline (RST, FIN) adds a second, earlier entry. The owner keeps, per
//! session, the tick of its live entry: an entry met at any other tick is stale and ignored,
//! which also makes entries of a freed-and-reused slot harmless.
//!
//! Time is kept in 32-bit ticks of 1/8 s counted from the wheel's epoch (17 years of range),
//! so a session's two timestamps cost 8 bytes.

/// Ticks of 1/8 s: timeouts land within 125 ms of their deadline.
pub const TICK_NS: u64 = 125_000_000;
/// 2^16 ticks = 8192 s ≈ 2 h 16 min, above the 2 h 4 min TCP default; longer deadlines are
/// parked at the horizon and re-scheduled when it comes.
const SLOTS: usize = 1 << 16;

/// The tick an entry due at `tick` is placed at while the wheel stands at `current`: kept
/// within the wheel's horizon. `decide` uses it to record where a rescheduled entry goes.
pub fn placement(current: u32, tick: u32) -> u32 {
    tick.clamp(current + 1, current + SLOTS as u32 - 1)
}

/// Whether an entry met at `tick` is the live one of an owner whose entry was placed at
/// `scheduled`. Unprocessed entries lie within one horizon, so the slot identifies the
/// tick — also after a long jump, when slots are visited at later ticks than placed.
pub fn is_live(scheduled: u32, tick: u32) -> bool {
    scheduled as usize & (SLOTS - 1) == tick as usize & (SLOTS - 1) && scheduled != u32::MAX
}

#[derive(Debug)]
pub struct TimerWheel {
    epoch_ns: u64,
    slots: Vec<Vec<u32>>,
    /// The last tick whose slot has been processed.
    current: u32,
    /// Re-used buffer for the slot being drained (no allocation per tick after warm-up).
    draining: Vec<u32>,
}

/// What the owner of the entries decides for a due one.
pub enum Due {
    Expire,
    /// Still alive: check again at this tick.
    Reschedule(u32),
    /// Stale entry: forget it.
    Ignore,
}

impl TimerWheel {
    pub fn new(epoch_ns: u64) -> Self {
        TimerWheel {
            epoch_ns,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            current: 0,
            draining: Vec::new(),
        }
    }

    /// The first tick at or after `ns`: a deadline is reached once that tick is processed.
    #[inline]
    pub fn deadline_tick(&self, ns: u64) -> u32 {
        // Rounding up by adding first: one multiply, where `div_ceil` also tests the
        // remainder (every established packet computes this). Saturating only changes
        // times that are clamped to the last tick anyway.
        (ns.saturating_sub(self.epoch_ns).saturating_add(TICK_NS - 1) / TICK_NS)
            .min(u32::MAX as u64) as u32
    }

    /// The time a tick stands for: the inverse of [`TimerWheel::deadline_tick`].
    pub fn tick_ns(&self, tick: u32) -> u64 {
        self.epoch_ns + tick as u64 * TICK_NS
    }

    /// Schedules `entry` to be checked at `tick`; returns the tick it was placed at.
    pub fn schedule(&mut self, entry: u32, tick: u32) -> u32 {
        let placed = placement(self.current, tick);
        self.slots[placed as usize & (SLOTS - 1)].push(entry);
        placed
    }

    /// Processes every slot up to `now_ns`, asking `decide(entry, tick)` about each entry;
    /// a rescheduled entry is placed at `placement(tick)` of the returned tick.
    pub fn advance(&mut self, now_ns: u64, mut decide: impl FnMut(u32, u32) -> Due) {
        let target = (now_ns.saturating_sub(self.epoch_ns) / TICK_NS)
            .min(u32::MAX as u64 - SLOTS as u64) as u32;
        // A jump longer than the wheel visits each slot once: everything due is expired and
        // the rest re-scheduled.
        if target - self.current.min(target) > SLOTS as u32 {
            self.current = target - SLOTS as u32;
        }
        while self.current < target {
            self.current += 1;
            let tick = self.current;
            let mut draining = std::mem::take(&mut self.draining);
            std::mem::swap(&mut self.slots[tick as usize & (SLOTS - 1)], &mut draining);
            for entry in draining.drain(..) {
                match decide(entry, tick) {
                    Due::Reschedule(at) => {
                        self.schedule(entry, at);
                    }
                    Due::Expire | Due::Ignore => {}
                }
            }
            self.draining = draining;
        }
    }

    /// Heap bytes held by the wheel (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.slots.iter().map(|s| s.capacity() * 4).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// A model owner: deadline ticks and live-entry ticks per index.
    struct Model {
        deadline: Vec<u32>,
        scheduled: Vec<u32>,
        expired: Vec<u32>,
    }

    impl Model {
        fn new(wheel: &mut TimerWheel, deadlines_ns: &[u64]) -> Model {
            let deadline: Vec<u32> = deadlines_ns
                .iter()
                .map(|d| wheel.deadline_tick(*d))
                .collect();
            let scheduled = deadline
                .iter()
                .enumerate()
                .map(|(i, d)| wheel.schedule(i as u32, *d))
                .collect();
            Model {
                deadline,
                scheduled,
                expired: vec![],
            }
        }
        fn run(&mut self, wheel: &mut TimerWheel, now: u64) {
            let (deadline, scheduled, expired) =
                (&self.deadline, &mut self.scheduled, &mut self.expired);
            wheel.advance(now, |e, tick| {
                let i = e as usize;
                if !is_live(scheduled[i], tick) {
                    Due::Ignore
                } else if deadline[i] <= tick {
                    scheduled[i] = u32::MAX;
                    expired.push(e);
                    Due::Expire
                } else {
                    scheduled[i] = placement(tick, deadline[i]);
                    Due::Reschedule(deadline[i])
                }
            });
        }
    }

    #[test]
    fn deadline_tick_is_the_first_tick_at_or_after_the_time() {
        let wheel = TimerWheel::new(1_000);
        let mut rng = crate::rng::SplitMix64::new(9);
        let edges = [
            0,
            1,
            999,
            1_000,
            1_001,
            TICK_NS,
            TICK_NS + 1_000,
            TICK_NS + 1_001,
        ];
        let random = (0..10_000).map(|i| rng.next_u64() >> (i % 64));
        for ns in edges
            .into_iter()
            .chain(random)
            .chain([u64::MAX - 1, u64::MAX])
        {
            let exact = ns
                .saturating_sub(1_000)
                .div_ceil(TICK_NS)
                .min(u32::MAX as u64) as u32;
            assert_eq!(wheel.deadline_tick(ns), exact, "{ns}");
        }
    }

    #[test]
    fn expires_at_deadline_not_before_and_refresh_postpones() {
        let mut w = TimerWheel::new(1_000 * S);
        let mut m = Model::new(&mut w, &[1_300 * S, 1_060 * S]);
        m.run(&mut w, 1_059 * S);
        assert!(m.expired.is_empty());
        m.deadline[1] = w.deadline_tick(1_120 * S); // refreshed: moves lazily when its slot comes
        m.run(&mut w, 1_061 * S);
        assert!(m.expired.is_empty());
        m.run(&mut w, 1_120 * S);
        assert_eq!(m.expired, vec![1]);
        m.run(&mut w, 1_299 * S);
        assert_eq!(m.expired, vec![1]);
        m.run(&mut w, 1_300 * S);
        assert_eq!(m.expired, vec![1, 0]);
    }

    #[test]
    fn shortened_deadline_fires_early_and_the_old_entry_is_ignored() {
        let mut w = TimerWheel::new(0);
        let mut m = Model::new(&mut w, &[7_440 * S]);
        m.deadline[0] = w.deadline_tick(240 * S);
        m.scheduled[0] = w.schedule(0, m.deadline[0]);
        m.run(&mut w, 240 * S);
        assert_eq!(m.expired, vec![0]);
        m.run(&mut w, 8_000 * S);
        assert_eq!(
            m.expired,
            vec![0],
            "the stale entry must not expire it again"
        );
    }

    #[test]
    fn deadlines_beyond_the_horizon_and_long_jumps() {
        let mut w = TimerWheel::new(0);
        let mut m = Model::new(&mut w, &[7_440 * S, 20_000 * S]);
        m.run(&mut w, 7_439 * S);
        assert!(m.expired.is_empty());
        m.run(&mut w, 7_441 * S);
        assert_eq!(m.expired, vec![0]);
        m.run(&mut w, 19_999 * S);
        assert_eq!(m.expired, vec![0]);
        // One jump of days: still exactly once.
        m.run(&mut w, 900_000 * S);
        assert_eq!(m.expired, vec![0, 1]);
    }
}
