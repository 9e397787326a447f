#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| writ_fuzz::checks::check_jsonrpc(data));
