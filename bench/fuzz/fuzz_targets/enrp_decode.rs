//! Oracle (STYLE.md, Codec): decoding never panics, and decode→encode→decode is stable.
//! `rserpool::wire::fuzz::check` panics on a violation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rserpool::wire::fuzz::check(data));
