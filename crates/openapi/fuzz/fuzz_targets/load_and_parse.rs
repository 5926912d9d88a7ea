//! Loads arbitrary bytes as a spec (JSON or YAML, OpenAPI 3 / Swagger 2.0 conversion) and turns it into tools;
//! any panic, hang or overflow is a bug. Run with `cargo fuzz run load_and_parse` from `crates/openapi`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolplane_openapi::{LoadOptions, ParseOptions, inspect_json, load_spec_with, parse_tools};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let options = LoadOptions {
        max_bytes: 1 << 20,
        ..LoadOptions::default()
    };
    if let Ok(spec) = load_spec_with(&text, &options).and_then(|l| l.into_spec()) {
        if let Ok(parsed) = parse_tools(&spec, &ParseOptions::default()) {
            let _ = inspect_json(&parsed);
        }
    }
});
