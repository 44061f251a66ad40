//! Rate control: a token bucket, consulted on batch boundaries.
//!
//! Tokens accrue at the target rate up to a small burst; the sender waits until a whole
//! batch is covered, then takes it. The batch is kept short at low rates
//! ([`batch_for_rate`]: about 100 µs of traffic), so pacing stays smooth.

/// A token bucket in packets, driven by a nanosecond clock the caller passes in.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Packets per nanosecond.
    per_ns: f64,
    burst: f64,
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// `pps` packets per second, holding at most `burst` unused packets; starts empty.
    pub fn new(pps: f64, burst: u32, now_ns: u64) -> TokenBucket {
        TokenBucket {
            per_ns: pps / 1e9,
            burst: f64::from(burst.max(1)),
            tokens: 0.0,
            last_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            let add = (now_ns - self.last_ns) as f64 * self.per_ns;
            self.tokens = (self.tokens + add).min(self.burst);
            self.last_ns = now_ns;
        }
    }

    /// Takes `want` packets if the bucket holds them all (a whole batch), else none.
    pub fn take(&mut self, now_ns: u64, want: u32) -> u32 {
        self.refill(now_ns);
        if want > 0 && self.tokens >= f64::from(want) {
            self.tokens -= f64::from(want);
            want
        } else {
            0
        }
    }

    /// Gives back packets taken but not sent.
    pub fn refund(&mut self, n: u32) {
        self.tokens = (self.tokens + f64::from(n)).min(self.burst);
    }

    /// Nanoseconds until `want` packets are available.
    pub fn ns_until(&mut self, now_ns: u64, want: u32) -> u64 {
        self.refill(now_ns);
        let missing = f64::from(want) - self.tokens;
        if missing <= 0.0 || self.per_ns <= 0.0 {
            0
        } else {
            (missing / self.per_ns).ceil() as u64
        }
    }
}

/// The batch for a rate: about 100 µs of packets, between 1 and `max_batch`.
pub fn batch_for_rate(pps: Option<u64>, max_batch: u32) -> u32 {
    match pps {
        None => max_batch.max(1),
        Some(pps) => ((pps / 10_000) as u32).clamp(1, max_batch.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_to_the_rate_on_batch_boundaries() {
        for (pps, batch) in [(20_000u64, 2u32), (1_000, 1), (1_000_000, 64), (50_000, 5)] {
            let mut bucket = TokenBucket::new(pps as f64, batch * 2, 0);
            let mut sent = 0u64;
            let mut now = 0u64;
            // A sender polling every 3 µs for one simulated second.
            while now < 1_000_000_000 {
                sent += u64::from(bucket.take(now, batch));
                now += 3_000;
            }
            let err = (sent as f64 - pps as f64).abs() / pps as f64;
            assert!(err < 0.01, "{pps} pps: sent {sent}");
        }
    }

    #[test]
    fn the_burst_caps_what_an_idle_sender_may_catch_up() {
        let mut bucket = TokenBucket::new(1_000.0, 4, 0);
        assert_eq!(bucket.take(10_000_000_000, 8), 0);
        assert_eq!(bucket.take(10_000_000_000, 4), 4);
        assert_eq!(bucket.take(10_000_000_000, 1), 0);
        bucket.refund(2);
        assert_eq!(bucket.take(10_000_000_000, 2), 2);
        assert_eq!(bucket.ns_until(10_000_000_000, 1), 1_000_000);
    }

    #[test]
    fn batches_shrink_at_low_rates() {
        assert_eq!(batch_for_rate(None, 64), 64);
        assert_eq!(batch_for_rate(Some(1_000), 64), 1);
        assert_eq!(batch_for_rate(Some(50_000), 64), 5);
        assert_eq!(batch_for_rate(Some(10_000_000), 64), 64);
    }
}
