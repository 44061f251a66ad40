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
}
