//! Arbitrary bytes as a RADIUS Accounting-Request: the length and attribute checks, both
//! authenticators, the record it would make and the response built to it must never
//! panic. Run from the repository root: `RUSTC_BOOTSTRAP=1 cargo fuzz run radius` (see README).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tracenat::identity::radius::fuzz::judge_bytes(data);
});
