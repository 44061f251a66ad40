//! The server's clock, measured from its own log.
//!
//! The **offset** is the server's clock minus the NAT's (negative: the server is slow). A
//! request logged at server time `T` was made at NAT time `T − offset`.
//!
//! Every request with a client port and a known destination is a **sample**: the
//! session(s) that held that public endpoint toward that destination, found in a wide
//! window (`T ± max offset`), must have carried it, so the offset lies in
//! `[T − active_end, T + resolution − start]` for one of them, where `active_end` is the
//! session's last activity where the log knows it ([`Candidate::last_active_ns`]), else its
//! end, and `resolution` is how coarse the logged time is: a time of whole seconds stands
//! for any moment of that second (servers truncate), so 1 s; otherwise 1 ms. A start or
//! end the log does not have is bounded by the window searched.
//!
//! **Estimate** ([`estimate`]):
//!
//! 1. Drift. The samples are split in two halves by request time; each half's offset is
//!    the middle of the range covered by the most samples of that half (a sweep over the
//!    interval ends). The drift is the difference over the time between the halves'
//!    median requests. Two halves, not a least-squares line: each half's estimate is the
//!    point most samples agree on, so a minority of wrong samples (another server mixed
//!    in, a reused port) moves it little, where it would pull a fitted line; a clock that
//!    drifts is nearly linear over the hours a log covers. With fewer than
//!    [`MIN_HALF_SAMPLES`] samples per half, or halves less than a minute apart, the drift
//!    is taken as 0; so it is when larger than [`MAX_DRIFT_PPB`] (no clock drifts that
//!    fast: it is a step or several clocks, which the agreement rule handles), and when
//!    taking it out does not make more samples agree, or, as many agreeing, more samples
//!    share the band (a drift the evidence does not need is not applied).
//! 2. Band. The samples, with the drift taken out (offsets referred to one time), are swept
//!    again: the **band** is the range of offsets covered by the most samples (ties: from
//!    the first to the last such range).
//! 3. Agreement. A sample **agrees** when one of its intervals comes within the skew
//!    allowed of the band. When all agree, the offsets allowed are the band. When some do
//!    not, the offsets allowed are widened to reach the nearest offset of every sample that
//!    disagrees — never narrower than the evidence — and the report says so.
//!
//! **Applying it**: a request at server time `T` is asked about the NAT window
//! `[T − drift(T) − allowed_hi − skew, T − drift(T) − allowed_lo + skew]`.

use crate::reader::model::{Candidate, Evidence};

/// Fewer samples than this in a half: no drift is estimated.
pub const MIN_HALF_SAMPLES: usize = 8;
/// The largest drift believed (ns per s): 1000 ppm, 3.6 s an hour — ten times what an
/// unsynchronised quartz clock does.
pub const MAX_DRIFT_PPB: i64 = 1_000_000;
/// The resolution assumed for a time of whole seconds, and for any other.
const WHOLE_SECOND: i64 = 1_000_000_000;
const FINER: i64 = 1_000_000;
/// Intervals kept per sample (the sessions found for it); further ones are merged into the
/// last, which only widens what the sample allows.
pub const MAX_INTERVALS: usize = 4;

const NS_PER_S: i128 = 1_000_000_000;

/// One request's evidence about the offset: the offsets (ns) that put it inside a session
/// that could have carried it, sorted and disjoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The request's time in the server's log, ns since the epoch.
    pub time_ns: u64,
    pub intervals: Vec<(i64, i64)>,
}

impl Sample {
    /// The sample a request's wide-window candidates give: only sessions count (their
    /// destination matched); `None` without any.
    pub fn from_candidates(
        time_ns: u64,
        candidates: &[Candidate],
        max_offset_ns: u64,
    ) -> Option<Sample> {
        let max = i64::try_from(max_offset_ns).unwrap_or(i64::MAX);
        let resolution = if time_ns.is_multiple_of(WHOLE_SECOND as u64) {
            WHOLE_SECOND
        } else {
            FINER
        };
        let mut intervals: Vec<(i64, i64)> = candidates
            .iter()
            .filter(|c| c.evidence == Evidence::Session)
            .filter_map(|c| {
                let active_end = c.last_active_ns.or(c.end_ns);
                let lo = active_end.map_or(-max, |end| signed_diff(time_ns, end).max(-max));
                let hi = c.start_ns.map_or(max, |start| {
                    signed_diff(time_ns, start)
                        .saturating_add(resolution)
                        .min(max)
                });
                (lo <= hi).then_some((lo, hi))
            })
            .collect();
        if intervals.is_empty() {
            return None;
        }
        normalise(&mut intervals);
        Some(Sample { time_ns, intervals })
    }

    /// The distance from the offset range `[lo, hi]` to the nearest offset this sample
    /// allows, and that offset.
    fn nearest(&self, shift: i64, lo: i64, hi: i64) -> (u64, i64) {
        self.intervals
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (a - shift, b - shift);
                if b < lo {
                    (lo.abs_diff(b), b)
                } else if a > hi {
                    (a.abs_diff(hi), a)
                } else {
                    (0, a.max(lo))
                }
            })
            .min()
            .unwrap_or((0, lo))
    }
}

/// `a − b` in i64, saturating.
fn signed_diff(a: u64, b: u64) -> i64 {
    let d = i128::from(a) - i128::from(b);
    d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Sorts, merges overlapping intervals, and keeps at most [`MAX_INTERVALS`].
fn normalise(intervals: &mut Vec<(i64, i64)>) {
    intervals.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
    for &(lo, hi) in intervals.iter() {
        let full = merged.len() >= MAX_INTERVALS;
        match merged.last_mut() {
            Some(last) if lo <= last.1 || full => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    *intervals = merged;
}

/// The offsets covered by the most samples, each sample shifted by `shift(sample)`:
/// `(lo, hi, samples covering)`. Tied ranges are joined (first to last), which can only
/// widen the answer.
fn best_range<'s>(samples: impl Iterator<Item = (&'s Sample, i64)>) -> Option<(i64, i64, usize)> {
    // (offset, kind): an opening is -1 and a closing +1, so that at equal offsets the
    // openings sort first — intervals are closed, touching ones overlap.
    let mut events: Vec<(i64, i8)> = Vec::new();
    for (sample, shift) in samples {
        for &(lo, hi) in &sample.intervals {
            events.push((lo.saturating_sub(shift), -1));
            events.push((hi.saturating_sub(shift), 1));
        }
    }
    events.sort_unstable();
    let (mut depth, mut best) = (0usize, 0usize);
    let (mut lo, mut hi) = (0i64, 0i64);
    for &(at, kind) in &events {
        if kind < 0 {
            depth += 1;
            if depth > best {
                (best, lo, hi) = (depth, at, at);
            }
        } else {
            if depth == best {
                hi = at;
            }
            depth -= 1;
        }
    }
    (best > 0).then_some((lo, hi, best))
}

/// What the samples say about one server's clock (all figures in ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEstimate {
    /// Samples used.
    pub samples: u64,
    /// Samples within the skew allowed of the band.
    pub agreeing: u64,
    /// The offsets (at `reference_ns`) covered by the most samples.
    pub band: (i64, i64),
    /// The offsets (at `reference_ns`) applied: the band, widened to reach the samples
    /// that disagree.
    pub allowed: (i64, i64),
    /// The time (server clock) the offsets refer to; the drift moves them from there.
    pub reference_ns: u64,
    /// Drift of the offset, ns per second (ppb); 0 when not estimated.
    pub drift_ppb: i64,
    /// The first and last request time of the samples.
    pub first_ns: u64,
    pub last_ns: u64,
}

impl OffsetEstimate {
    /// Every sample agrees with the band within the skew.
    pub fn consistent(&self) -> bool {
        self.agreeing == self.samples
    }

    /// The drift's contribution at server time `time_ns`.
    pub fn drift_at(&self, time_ns: u64) -> i64 {
        drift_shift(self.drift_ppb, time_ns, self.reference_ns)
    }

    /// The offsets allowed at server time `time_ns`.
    pub fn allowed_at(&self, time_ns: u64) -> (i64, i64) {
        let d = self.drift_at(time_ns);
        (
            self.allowed.0.saturating_add(d),
            self.allowed.1.saturating_add(d),
        )
    }

    /// The NAT-time window for a request at server time `time_ns`.
    pub fn window(&self, time_ns: u64, skew_ns: u64) -> (u64, u64) {
        let (lo, hi) = self.allowed_at(time_ns);
        nat_window(time_ns, lo, hi, skew_ns)
    }
}

/// `[T − hi − skew, T − lo + skew]`, clamped to the u64 range.
pub fn nat_window(time_ns: u64, lo: i64, hi: i64, skew_ns: u64) -> (u64, u64) {
    let t = i128::from(time_ns);
    let skew = i128::from(skew_ns);
    let clamp = |x: i128| x.clamp(0, i128::from(u64::MAX)) as u64;
    (
        clamp(t - i128::from(hi) - skew),
        clamp(t - i128::from(lo) + skew),
    )
}

fn drift_shift(drift_ppb: i64, time_ns: u64, reference_ns: u64) -> i64 {
    let elapsed = i128::from(time_ns) - i128::from(reference_ns);
    (i128::from(drift_ppb) * elapsed / NS_PER_S).clamp(i128::from(i64::MIN), i128::from(i64::MAX))
        as i64
}

fn middle((lo, hi, _): (i64, i64, usize)) -> i64 {
    lo / 2 + hi / 2 + (lo % 2 + hi % 2) / 2
}

/// Times the drift is re-estimated on the samples with the drift so far taken out: within
/// a half the offset moves by half the total drift, which blurs that half's estimate;
/// once most of the drift is out, the halves are sharp.
const DRIFT_ROUNDS: usize = 3;

/// The drift (ppb) and the reference time (the median request), from the two halves of
/// the samples by time.
fn drift(sorted: &[&Sample]) -> (i64, u64) {
    let median = |half: &[&Sample]| half.get(half.len() / 2).map_or(0, |s| s.time_ns);
    let reference = median(sorted);
    let (first, second) = sorted.split_at(sorted.len() / 2);
    if first.len() < MIN_HALF_SAMPLES || second.len() < MIN_HALF_SAMPLES {
        return (0, reference);
    }
    let elapsed = i128::from(median(second)) - i128::from(median(first));
    if elapsed < 60 * NS_PER_S {
        return (0, reference);
    }
    let mut ppb = 0i64;
    for _ in 0..DRIFT_ROUNDS {
        let shifted = |half: &[&Sample]| {
            let shift = |s: &Sample| drift_shift(ppb, s.time_ns, reference);
            best_range(half.iter().map(|s| (*s, shift(s)))).map(middle)
        };
        let (Some(m1), Some(m2)) = (shifted(first), shifted(second)) else {
            break;
        };
        let residual = (i128::from(m2) - i128::from(m1)) * NS_PER_S / elapsed;
        ppb = (i128::from(ppb) + residual).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    }
    if ppb.abs() > MAX_DRIFT_PPB {
        return (0, reference);
    }
    (ppb, reference)
}

/// The band, its coverage, the samples agreeing and the offsets allowed, for one drift.
struct Fit {
    band: (i64, i64),
    covered: usize,
    agreeing: u64,
    allowed: (i64, i64),
}

fn fit(sorted: &[&Sample], drift_ppb: i64, reference_ns: u64, skew_ns: u64) -> Option<Fit> {
    let shift = |s: &Sample| drift_shift(drift_ppb, s.time_ns, reference_ns);
    let (lo, hi, covered) = best_range(sorted.iter().map(|s| (*s, shift(s))))?;
    let mut allowed = (lo, hi);
    let mut agreeing = 0u64;
    for sample in sorted {
        let (distance, nearest) = sample.nearest(shift(sample), lo, hi);
        if distance <= skew_ns {
            agreeing += 1;
        } else {
            allowed = (allowed.0.min(nearest), allowed.1.max(nearest));
        }
    }
    Some(Fit {
        band: (lo, hi),
        covered,
        agreeing,
        allowed,
    })
}

/// The estimate from a server's samples, with `skew_ns` the disagreement tolerated; `None`
/// without samples.
pub fn estimate(samples: &[Sample], skew_ns: u64) -> Option<OffsetEstimate> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.time_ns);
    let (first, last) = (sorted.first()?.time_ns, sorted.last()?.time_ns);
    let (drifting, reference_ns) = drift(&sorted);
    let still = fit(&sorted, 0, reference_ns, skew_ns)?;
    let (drift_ppb, chosen) = match fit(&sorted, drifting, reference_ns, skew_ns) {
        Some(d) if drifting != 0 && (d.agreeing, d.covered) > (still.agreeing, still.covered) => {
            (drifting, d)
        }
        _ => (0, still),
    };
    Some(OffsetEstimate {
        samples: sorted.len() as u64,
        agreeing: chosen.agreeing,
        band: chosen.band,
        allowed: chosen.allowed,
        reference_ns,
        drift_ppb,
        first_ns: first,
        last_ns: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::model::Evidence;
    use crate::rng::SplitMix64;
    use std::net::{Ipv4Addr, SocketAddrV4};

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    const T0: u64 = 1_795_601_472 * S;
    const MAX: u64 = 600 * S;

    fn session(start: u64, end: Option<u64>, last_active: Option<u64>) -> Candidate {
        Candidate {
            box_name: None,
            subscriber: SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 1), 5000),
            public: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 40000),
            ports: None,
            dest: Some(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 80), 80)),
            protocol: 6,
            start_ns: Some(start),
            end_ns: end,
            last_active_ns: last_active,
            evidence: Evidence::Session,
            holders: Default::default(),
        }
    }

    /// `n` requests over `span`, each 0–1 s into a session; the server logs whole seconds
    /// with its clock `offset(t)` away. With `activity`, the log knows each session's
    /// last packet (2 s after its start); else only its end, 4 minutes later.
    fn samples(n: u64, span: u64, activity: bool, offset: impl Fn(u64) -> i64) -> Vec<Sample> {
        let mut rng = SplitMix64::new(7);
        (0..n)
            .map(|i| {
                let start = T0 + i * span / n;
                let at = start + rng.next_u64() % S;
                let logged = (i128::from(at) + i128::from(offset(at))) as u64 / S * S;
                let c = session(
                    start,
                    Some(start + 240 * S),
                    activity.then_some(start + 2 * S),
                );
                Sample::from_candidates(logged, &[c], MAX).unwrap()
            })
            .collect()
    }

    /// Never narrower than the evidence: every sample's request window reaches one of
    /// the sessions that could have carried it.
    fn every_sample_is_reached(e: &OffsetEstimate, all: &[Sample], skew: u64) {
        for sample in all {
            let (from, to) = e.window(sample.time_ns, skew);
            let reached = sample.intervals.iter().any(|&(a, b)| {
                let (first, last) = nat_window(sample.time_ns, a, b, 0);
                first <= to && from <= last
            });
            assert!(reached, "{sample:?} outside {from}..{to} of {e:?}");
        }
    }

    #[test]
    fn a_slow_server_is_measured_to_the_second() {
        let truth = -160 * S as i64;
        let all = samples(500, 3600 * S, true, |_| truth);
        let e = estimate(&all, 2 * S).unwrap();
        every_sample_is_reached(&e, &all, 2 * S);
        assert!(e.consistent(), "{e:?}");
        assert_eq!(e.samples, 500);
        let (lo, hi) = e.allowed_at(T0);
        assert!(lo <= truth && truth <= hi + S as i64, "{e:?}");
        assert!(hi - lo <= 2 * S as i64, "{e:?}");
        assert!(e.drift_ppb.abs() < 1000, "{e:?}");
    }

    #[test]
    fn without_activity_the_band_is_as_wide_as_the_evidence() {
        let truth = -160 * S as i64;
        let e = estimate(&samples(500, 3600 * S, false, |_| truth), 2 * S).unwrap();
        assert!(e.consistent(), "{e:?}");
        let (lo, hi) = e.allowed_at(T0);
        // The sessions' starts bound it closely from above; their ends loosely from below.
        assert!(
            lo <= truth && truth - S as i64 <= hi && hi <= truth + S as i64,
            "{e:?}"
        );
        assert!(hi - lo > 200 * S as i64, "{e:?}");
    }

    #[test]
    fn drift_is_followed() {
        // 500 ppm: 18 s over ten hours, far more than the skew allowed.
        let offset = |t: u64| -160 * S as i64 + ((t - T0) / 2000) as i64;
        let all = samples(600, 36_000 * S, true, offset);
        let e = estimate(&all, S / 2).unwrap();
        assert!((400_000..600_000).contains(&e.drift_ppb), "{e:?}");
        assert!(e.consistent(), "{e:?}");
        every_sample_is_reached(&e, &all, S / 2);
        // Without following the drift the samples could not agree.
        assert!(
            all.iter()
                .any(|s| s.nearest(0, e.band.0, e.band.1).0 > S / 2)
        );
        for (at, truth) in [(T0, offset(T0)), (T0 + 35_000 * S, offset(T0 + 35_000 * S))] {
            let (lo, hi) = e.allowed_at(at);
            assert!(
                lo - (S as i64) / 2 <= truth && truth <= hi + S as i64,
                "{at} {e:?}"
            );
        }
    }

    #[test]
    fn two_clocks_are_never_reconciled_by_force() {
        let mut all = samples(300, 3600 * S, true, |_| -160 * S as i64);
        let other = samples(100, 3600 * S, true, |_| -20 * S as i64);
        all.extend(other);
        let e = estimate(&all, 2 * S).unwrap();
        assert!(!e.consistent());
        assert_eq!(e.agreeing, 300, "{e:?}");
        every_sample_is_reached(&e, &all, 2 * S);
        let (lo, hi) = e.allowed_at(T0 + 1800 * S);
        assert!(lo <= -160 * S as i64 && hi >= -23 * S as i64, "{e:?}");
    }

    #[test]
    fn samples_from_candidates() {
        let t = T0 + 1000 * S;
        // No session: no sample. Blocks and mappings say nothing about time.
        assert_eq!(Sample::from_candidates(t, &[], MAX), None);
        let mut block = session(T0, None, None);
        block.evidence = Evidence::Block;
        assert_eq!(Sample::from_candidates(t, &[block], MAX), None);
        // A start and last activity; an open end is bounded by the search.
        let a = session(t - 10 * S, Some(t + 300 * S), Some(t - 5 * S));
        let mut b = session(t + 100 * S, None, None);
        b.start_ns = Some(t + 100 * S);
        let s = Sample::from_candidates(t, &[b, a], MAX).unwrap();
        let (s5, s10, s100) = (5 * S as i64, 10 * S as i64, 100 * S as i64);
        // The request's time is whole seconds: it stands for any moment of its second.
        let s1 = S as i64;
        assert_eq!(
            s.intervals,
            vec![(-(MAX as i64), -s100 + s1), (s5, s10 + s1)]
        );
        // Unknown start: bounded by the search too.
        let mut c = session(0, Some(t + 50 * MS), None);
        c.start_ns = None;
        let s = Sample::from_candidates(t, &[c], MAX).unwrap();
        assert_eq!(s.intervals, vec![(-50 * MS as i64, MAX as i64)]);
        // A time with a fraction has millisecond resolution.
        let a = session(t - 10 * S, None, Some(t - 5 * S));
        let s = Sample::from_candidates(t + 1, &[a], MAX).unwrap();
        assert_eq!(s.intervals, vec![(s5 + 1, s10 + 1 + MS as i64)]);
    }

    #[test]
    fn windows_and_extremes() {
        assert_eq!(
            nat_window(100 * S, -160 * S as i64, -150 * S as i64, S),
            (249 * S, 261 * S)
        );
        assert_eq!(nat_window(0, 5, 10, 3), (0, 0));
        assert_eq!(nat_window(u64::MAX, -10, -5, 3), (u64::MAX, u64::MAX));
        let extreme = Sample {
            time_ns: u64::MAX,
            intervals: vec![(i64::MIN, i64::MAX)],
        };
        let e = estimate(&[extreme.clone(), extreme], u64::MAX).unwrap();
        let _ = e.window(0, u64::MAX);
        let _ = e.window(u64::MAX, 0);
        assert_eq!(estimate(&[], S), None);
    }

    proptest::proptest! {
        #[test]
        fn any_samples_are_all_reached(
            raw in proptest::collection::vec(
                (0u64..7200, proptest::collection::vec((-900i64..900, 0i64..300), 1..4)), 1..60),
            skew in 0u64..5,
        ) {
            let all: Vec<Sample> = raw
                .iter()
                .map(|(t, spans)| {
                    let mut intervals: Vec<(i64, i64)> = spans
                        .iter()
                        .map(|&(lo, len)| (lo * S as i64, (lo + len) * S as i64))
                        .collect();
                    normalise(&mut intervals);
                    Sample { time_ns: T0 + t * S, intervals }
                })
                .collect();
            let e = estimate(&all, skew * S).unwrap();
            every_sample_is_reached(&e, &all, skew * S);
        }
    }
}
