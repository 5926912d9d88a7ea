//! The package checksum, bit-exact to the original (`decoder/checksum.go`).
//!
//! ```text
//! for every file: h[path] = sha256(content)
//! data = concat over paths in byte order of sha256(path) || h[path]
//! checksum = hex(sha256(data))
//! ```
//! The zip comment (signature) is not part of it; `.verification.dify.json` is, like every other file.

use aws_lc_rs::digest::{SHA256, digest};

use crate::archive::{DecodeLimits, PackageFile, read_archive};
use crate::error::PackageError;

/// The checksum of a set of files (any order; they are sorted by path here).
pub fn checksum_files(files: &[PackageFile]) -> String {
    let mut hashed: Vec<(&str, [u8; 32])> = files.iter().map(|f| (f.path.as_str(), sha256(&f.content))).collect();
    hashed.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut data = Vec::with_capacity(hashed.len() * 64);
    for (path, hash) in hashed {
        data.extend_from_slice(&sha256(path.as_bytes()));
        data.extend_from_slice(&hash);
    }
    hex::encode(sha256(&data))
}

/// The checksum of a package, reading it with `limits` (entry names, sizes and zip bombs are checked; the
/// manifest is not).
pub fn checksum_package(package: &[u8], limits: &DecodeLimits) -> Result<String, PackageError> {
    Ok(checksum_files(&read_archive(package, limits)?.files))
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> PackageFile {
        PackageFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn order_independent_and_content_sensitive() {
        let a = checksum_files(&[file("b.txt", "2"), file("a.txt", "1")]);
        let b = checksum_files(&[file("a.txt", "1"), file("b.txt", "2")]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(a, checksum_files(&[file("a.txt", "1"), file("b.txt", "3")]));
        assert_ne!(a, checksum_files(&[file("a.txt", "1"), file("c.txt", "2")]));
    }

    #[test]
    fn empty_set_is_sha256_of_nothing() {
        assert_eq!(
            checksum_files(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
