//! Fuzzes the package decoder: any input must yield a package or an error, never a panic, and decoding must stay
//! within the limits. Run with `cargo fuzz run decode` from `crates/plugin`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use toolplane_plugin::{DecodeLimits, PublicKeyPem, checksum_package, decode};

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast while exercising every limit check.
    let limits = DecodeLimits {
        max_package_size: 1 << 20,
        max_uncompressed_size: 4 << 20,
        max_entries: 256,
        max_compression_ratio: 100,
        ratio_threshold: 64 * 1024,
    };
    if let Ok(package) = decode(data, &limits) {
        assert!(package.files().iter().map(|f| f.content.len()).sum::<usize>() <= 4 << 20);
        let _ = package.readmes();
        let _ = package.check_assets();
        let _ = package.verify_signature(&[PublicKeyPem::official()]);
    }
    let _ = checksum_package(data, &limits);
});
