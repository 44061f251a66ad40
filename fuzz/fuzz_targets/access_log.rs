//! Arbitrary bytes as a server's access log: clock measurement, attribution and grouping
//! by actor must never panic, and the counts must add up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tracenat::reader::fuzz::attribute_bytes(data);
});
