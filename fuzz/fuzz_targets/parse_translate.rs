//! Arbitrary bytes through parsing and translation, in both directions, against an engine
//! that holds live sessions (so inbound packets and ICMP errors can match something).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use tracenat::fuzzing::Harness;

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new());
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| h.borrow_mut().run(data));
});
