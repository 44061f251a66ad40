//! Answers already sent, so that a retransmitted request is answered again without
//! being stored again (RFC 5080 §2.2.2: a duplicate has the same source address and
//! port, Identifier and Request Authenticator).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::wire::AUTHENTICATOR_LEN;

/// What identifies a request among retransmissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub from: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; AUTHENTICATOR_LEN],
}

/// A bounded cache of responses: an entry lives `window_ns`, and beyond `capacity` the
/// oldest goes first, so a flood of distinct requests costs bounded memory.
#[derive(Debug)]
pub struct ResponseCache {
    responses: HashMap<RequestKey, (u64, Vec<u8>)>,
    /// Keys in the order they were added, with the time, for expiry.
    order: VecDeque<(u64, RequestKey)>,
    window_ns: u64,
    capacity: usize,
}

impl ResponseCache {
    pub fn new(window_ns: u64, capacity: usize) -> ResponseCache {
        ResponseCache {
            responses: HashMap::new(),
            order: VecDeque::new(),
            window_ns,
            capacity: capacity.max(1),
        }
    }

    /// The response sent to `key` within the window before `now_ns`.
    pub fn get(&self, key: &RequestKey, now_ns: u64) -> Option<&[u8]> {
        let (added, response) = self.responses.get(key)?;
        (now_ns.saturating_sub(*added) < self.window_ns).then_some(response.as_slice())
    }

    pub fn insert(&mut self, key: RequestKey, response: Vec<u8>, now_ns: u64) {
        self.expire(now_ns);
        while self.responses.len() >= self.capacity {
            self.drop_oldest();
        }
        if self.responses.insert(key, (now_ns, response)).is_none() {
            self.order.push_back((now_ns, key));
        }
    }

    #[allow(clippy::len_without_is_empty)] // for tests of the bound
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    fn expire(&mut self, now_ns: u64) {
        while let Some(&(added, _)) = self.order.front() {
            if now_ns.saturating_sub(added) < self.window_ns {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.responses.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(identifier: u8) -> RequestKey {
        RequestKey {
            from: "127.0.0.1:4000".parse().unwrap(),
            identifier,
            authenticator: [identifier; 16],
        }
    }

    #[test]
    fn answers_within_the_window_only() {
        let mut cache = ResponseCache::new(30, 10);
        cache.insert(key(1), vec![1], 100);
        assert_eq!(cache.get(&key(1), 129), Some(&[1u8][..]));
        assert_eq!(cache.get(&key(1), 130), None);
        assert_eq!(cache.get(&key(2), 100), None);
        cache.insert(key(2), vec![2], 200);
        assert_eq!(cache.len(), 1, "the expired entry went");
    }

    #[test]
    fn stays_within_capacity_dropping_the_oldest() {
        let mut cache = ResponseCache::new(1_000, 3);
        for i in 0..10 {
            cache.insert(key(i), vec![i], u64::from(i));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key(6), 10).is_none());
        assert!(cache.get(&key(9), 10).is_some());
    }
}
