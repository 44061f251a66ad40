//! The host clock, and how far it can be trusted.
//!
//! A mapping log answers questions like "who had 203.0.113.7:40123 at 14:02:11?". The
//! question's timestamp comes from someone else's clock; the log's come from this host's.
//! Storing the kernel's view of the clock's synchronisation next to the timestamps lets an
//! answer say how far the NAT's clock could have been off (or that it was not synchronised
//! at all), instead of silently claiming a precision it never had.

/// The host clock's synchronisation state, as adjtimex(2) reports it (read only, no privileges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockState {
    /// false when the kernel says the clock is not synchronised (STA_UNSYNC set, or adjtimex returns TIME_ERROR).
    pub synchronised: bool,
    /// Maximum error bound, microseconds (timex.maxerror), saturated to u32.
    pub max_error_us: u32,
    /// Estimated error, microseconds (timex.esterror), saturated to u32.
    pub est_error_us: u32,
}

/// Reads the clock's synchronisation state (adjtimex with `modes = 0` changes nothing).
/// If the call fails the clock is reported unsynchronised with unbounded error.
pub fn clock_state() -> ClockState {
    // SAFETY: timex is plain old data, so all-zero is a valid value, and zero `modes`
    // makes adjtimex a pure read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call.
    let ret = unsafe { libc::adjtimex(&mut tx) };
    from_timex(ret, &tx)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How far the wall clock may jump against the monotonic one between two readings before
/// it counts as a step: NTP slews at most 500 ppm (0.5 ms a second), a worker reads the
/// clocks at least every millisecond, and steps are set by a person or by NTP only past
/// 128 ms (ntpd) or 1 s (chrony's usual `makestep`).
pub const STEP_THRESHOLD_NS: u64 = 100_000_000;

/// How far apart two readings of the wall clock around one of the monotonic clock may be
/// for the three to count as one moment.
const READ_SPREAD_NS: u64 = 1_000_000;

/// The NAT's two clocks. Timers run on engine time — the monotonic clock, counted from
/// the wall clock's reading at the start — so a step of the wall clock neither expires
/// every session at once nor keeps them past their timeouts; records are stamped with the
/// wall clock. Copied to every worker, so all share one origin.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    origin: std::time::Instant,
    start_wall_ns: u64,
}

/// One reading of both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Engine time: monotonic, in nanoseconds from the epoch as the wall clock read at the start.
    pub engine_ns: u64,
    pub wall_ns: u64,
}

impl Reading {
    /// wall − engine: what turns an engine time into the wall clock's reading.
    pub fn skew_ns(&self) -> i64 {
        self.wall_ns.wrapping_sub(self.engine_ns) as i64
    }
}

impl Timeline {
    pub fn start() -> Timeline {
        Timeline {
            origin: std::time::Instant::now(),
            start_wall_ns: wall_clock_ns(),
        }
    }

    /// Both clocks at one moment. They are read one after the other, so the wall clock is
    /// read on both sides of the monotonic one, and again if the thread was held up in
    /// between (a preemption would otherwise look like a step and a step back).
    pub fn read(&self) -> Reading {
        let mut reading = self.read_once();
        for _ in 0..3 {
            if reading.1.abs_diff(reading.0.wall_ns) <= READ_SPREAD_NS {
                break;
            }
            reading = self.read_once();
        }
        reading.0
    }

    /// A reading, and the wall clock read again just after it.
    fn read_once(&self) -> (Reading, u64) {
        let wall_ns = wall_clock_ns();
        let elapsed = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let reading = Reading {
            engine_ns: self.start_wall_ns.saturating_add(elapsed),
            wall_ns,
        };
        (reading, wall_clock_ns())
    }
}

/// A step of the wall clock: at `at_ns` (the wall clock's reading just after), by `by_ns`
/// (positive: forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStep {
    pub at_ns: u64,
    pub by_ns: i64,
}

/// Watches the wall clock against engine time for steps. It starts from a skew of 0,
/// which is what a [`Timeline`] has at its start: a step before the first reading counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepWatch {
    skew_ns: i64,
}

impl StepWatch {
    /// A watch whose last reading had this skew.
    pub fn from_skew(skew_ns: i64) -> StepWatch {
        StepWatch { skew_ns }
    }

    /// The step since the last reading, if the skew moved by more than
    /// [`STEP_THRESHOLD_NS`]; slewing moves it by less and is followed silently.
    pub fn observe(&mut self, reading: Reading) -> Option<ClockStep> {
        let skew = reading.skew_ns();
        let by_ns = skew.wrapping_sub(std::mem::replace(&mut self.skew_ns, skew));
        (by_ns.unsigned_abs() > STEP_THRESHOLD_NS).then_some(ClockStep {
            at_ns: reading.wall_ns,
            by_ns,
        })
    }

    /// The skew of the latest reading (0 before the first).
    pub fn skew_ns(&self) -> i64 {
        self.skew_ns
    }
}

/// `engine_ns` on the wall clock, given the skew.
pub fn on_wall_clock(engine_ns: u64, skew_ns: i64) -> u64 {
    engine_ns.saturating_add_signed(skew_ns)
}

/// Interprets adjtimex's return value and filled-in `timex`.
fn from_timex(ret: i32, tx: &libc::timex) -> ClockState {
    if ret < 0 {
        return ClockState {
            synchronised: false,
            max_error_us: u32::MAX,
            est_error_us: u32::MAX,
        };
    }
    ClockState {
        synchronised: ret != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        max_error_us: saturate(tx.maxerror),
        est_error_us: saturate(tx.esterror),
    }
}

/// Negative bounds are nonsense, so they read as unbounded rather than as zero error.
fn saturate(us: libc::c_long) -> u32 {
    u32::try_from(us).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timex(status: i32, maxerror: libc::c_long, esterror: libc::c_long) -> libc::timex {
        // SAFETY: timex is plain old data; all-zero is valid.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.status = status;
        tx.maxerror = maxerror;
        tx.esterror = esterror;
        tx
    }

    #[test]
    fn synchronised_clock() {
        let s = from_timex(libc::TIME_OK, &timex(libc::STA_PLL, 16_000, 12));
        assert_eq!(
            s,
            ClockState {
                synchronised: true,
                max_error_us: 16_000,
                est_error_us: 12,
            }
        );
    }

    #[test]
    fn sta_unsync_means_unsynchronised() {
        let s = from_timex(
            libc::TIME_OK,
            &timex(libc::STA_UNSYNC | libc::STA_PLL, 5, 1),
        );
        assert!(!s.synchronised);
        assert_eq!((s.max_error_us, s.est_error_us), (5, 1));
    }

    #[test]
    fn time_error_means_unsynchronised() {
        let s = from_timex(libc::TIME_ERROR, &timex(0, 5, 1));
        assert!(!s.synchronised);
        assert!(from_timex(libc::TIME_INS, &timex(0, 5, 1)).synchronised);
    }

    #[test]
    fn failure_means_unbounded() {
        let s = from_timex(-1, &timex(0, 5, 1));
        assert_eq!(
            s,
            ClockState {
                synchronised: false,
                max_error_us: u32::MAX,
                est_error_us: u32::MAX,
            }
        );
    }

    #[test]
    fn bounds_saturate() {
        let big = libc::c_long::MAX;
        let s = from_timex(libc::TIME_OK, &timex(0, big, -1));
        assert_eq!((s.max_error_us, s.est_error_us), (u32::MAX, u32::MAX));
        let s = from_timex(libc::TIME_OK, &timex(0, u32::MAX as libc::c_long, 0));
        assert_eq!((s.max_error_us, s.est_error_us), (u32::MAX, 0));
    }

    #[test]
    fn live_clock() {
        let state = clock_state();
        println!("host clock: {state:?}");
        let a = wall_clock_ns();
        let b = wall_clock_ns();
        const JAN_2020_NS: u64 = 1_577_836_800 * 1_000_000_000;
        assert!(a > JAN_2020_NS, "{a}");
        // Realtime may step backwards, but not by a second between two adjacent reads.
        assert!(b + 1_000_000_000 > a && b < a + 1_000_000_000, "{a} {b}");
    }

    fn reading(engine_s: u64, wall_s: u64) -> Reading {
        Reading {
            engine_ns: engine_s * 1_000_000_000,
            wall_ns: wall_s * 1_000_000_000,
        }
    }

    #[test]
    fn a_jump_of_the_wall_clock_is_a_step_and_slewing_is_not() {
        let mut watch = StepWatch::default();
        assert_eq!(watch.observe(reading(100, 100)), None);
        // 50 ms of slew over a second: followed, not a step.
        let slewed = Reading {
            engine_ns: 101_000_000_000,
            wall_ns: 101_050_000_000,
        };
        assert_eq!(watch.observe(slewed), None);
        assert_eq!(watch.skew_ns(), 50_000_000);
        // NTP steps the clock 10 minutes forward, then back.
        let forward = watch.observe(reading(102, 702)).unwrap();
        assert_eq!(forward.at_ns, 702_000_000_000);
        assert_eq!(forward.by_ns, 600_000_000_000 - 50_000_000);
        let back = watch.observe(reading(103, 103)).unwrap();
        assert_eq!(back.by_ns, -600_000_000_000);
        assert_eq!(
            on_wall_clock(103_000_000_000, watch.skew_ns()),
            103_000_000_000
        );
    }

    #[test]
    fn engine_time_starts_at_the_wall_clock_and_only_grows() {
        let timeline = Timeline::start();
        let a = timeline.read();
        let b = timeline.read();
        assert!(a.engine_ns <= b.engine_ns);
        assert!(a.skew_ns().unsigned_abs() < STEP_THRESHOLD_NS);
    }
}
