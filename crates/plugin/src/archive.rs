//! Reading a `.difypkg` zip defensively: size, entry-count and compression-ratio limits, and entry-name checks.
//!
//! Nothing in a zip header is trusted: sizes are counted while decompressing and reading stops as soon as a limit
//! is passed, so a zip bomb costs at most the limit in memory and time.

use std::collections::HashSet;
use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::error::PackageError;

/// `MAX_PLUGIN_PACKAGE_SIZE`'s default: 50 MiB.
pub const DEFAULT_MAX_PACKAGE_SIZE: u64 = 52_428_800;

/// Limits applied while reading a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted package (the zip file itself), in bytes.
    pub max_package_size: u64,
    /// Largest accepted sum of the decompressed sizes of all entries, in bytes.
    pub max_uncompressed_size: u64,
    /// Most entries (files and directories) an archive may hold.
    pub max_entries: usize,
    /// Largest accepted ratio of decompressed to compressed size of one entry. Only checked once an entry has
    /// produced more than [`DecodeLimits::ratio_threshold`] bytes, so small, very compressible files pass.
    pub max_compression_ratio: u64,
    /// Decompressed size of one entry below which the ratio is not checked.
    pub ratio_threshold: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_package_size: DEFAULT_MAX_PACKAGE_SIZE,
            max_uncompressed_size: DEFAULT_MAX_PACKAGE_SIZE,
            max_entries: 10_000,
            max_compression_ratio: 200,
            ratio_threshold: 1024 * 1024,
        }
    }
}

impl DecodeLimits {
    /// The defaults with both size limits set to `max_size` (what `MAX_PLUGIN_PACKAGE_SIZE` configures).
    pub fn with_max_size(max_size: u64) -> Self {
        Self {
            max_package_size: max_size,
            max_uncompressed_size: max_size,
            ..Self::default()
        }
    }
}

/// One file of a package: its path inside the archive and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// Slash-separated relative path, exactly as stored in the archive.
    pub path: String,
    /// The decompressed content.
    pub content: Vec<u8>,
}

/// The files of an archive in archive order, plus its comment.
#[derive(Debug, Clone)]
pub(crate) struct Archive {
    pub files: Vec<PackageFile>,
    pub comment: Vec<u8>,
}

impl Archive {
    /// The content of the file at `path`, if the archive has one.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.iter().find(|f| f.path == path).map(|f| f.content.as_slice())
    }
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// Reads every file entry of a zip, enforcing `limits` and the entry-name rules.
///
/// Directory entries (names ending in `/`) are skipped: they carry no content and the official packager never
/// writes them, so checksums and signatures are unaffected.
pub(crate) fn read_archive(bytes: &[u8], limits: &DecodeLimits) -> Result<Archive, PackageError> {
    let size = bytes.len() as u64;
    if size > limits.max_package_size {
        return Err(PackageError::PackageTooLarge {
            size,
            limit: limits.max_package_size,
        });
    }
    // The zip crate indexes entries by name and silently keeps one of several with the same name, so the central
    // directory is scanned here first: for the true entry count and to name duplicates.
    let names = central_directory_names(bytes, limits.max_entries)?;
    let mut unique = HashSet::with_capacity(names.len());
    for name in &names {
        if !unique.insert(name.as_slice()) {
            return Err(PackageError::DuplicateEntry(String::from_utf8_lossy(name).into_owned()));
        }
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| PackageError::NotAZip(e.to_string()))?;
    if zip.len() != names.len() {
        return Err(PackageError::NotAZip(format!(
            "the central directory lists {} entries but {} could be read",
            names.len(),
            zip.len()
        )));
    }
    let comment = zip.comment().to_vec();

    let mut seen = HashSet::new();
    let mut files = Vec::with_capacity(zip.len());
    let mut total: u64 = 0;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| PackageError::BadEntry {
            entry: format!("#{index}"),
            reason: e.to_string(),
        })?;
        let name = entry
            .name()
            .map_err(|e| PackageError::BadEntry {
                entry: String::from_utf8_lossy(entry.name_raw()).into_owned(),
                reason: format!("the name is not valid UTF-8: {e}"),
            })?
            .into_owned();
        check_entry_name(&name)?;
        if !seen.insert(name.clone()) {
            return Err(PackageError::DuplicateEntry(name));
        }
        if entry.unix_mode().is_some_and(|mode| mode & S_IFMT == S_IFLNK) {
            return Err(PackageError::Symlink(name));
        }
        if name.ends_with('/') {
            continue;
        }

        let remaining = limits.max_uncompressed_size.saturating_sub(total);
        let compressed = entry.compressed_size().max(1);
        let mut content = Vec::new();
        // Read at most one byte past the remaining budget: enough to know the budget is exceeded.
        let read = (&mut entry)
            .take(remaining.saturating_add(1))
            .read_to_end(&mut content)
            .map_err(|e| PackageError::BadEntry {
                entry: name.clone(),
                reason: e.to_string(),
            })? as u64;
        if read > remaining {
            return Err(PackageError::UncompressedTooLarge {
                entry: name,
                limit: limits.max_uncompressed_size,
            });
        }
        if read > limits.ratio_threshold && read / compressed > limits.max_compression_ratio {
            return Err(PackageError::SuspiciousCompression {
                entry: name,
                ratio: read / compressed,
                limit: limits.max_compression_ratio,
            });
        }
        total += read;
        files.push(PackageFile { path: name, content });
    }
    Ok(Archive { files, comment })
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?)))
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The raw entry names of the central directory, in order. Fails with `TooManyEntries` before reading names when
/// the directory declares more than `max_entries`.
fn central_directory_names(bytes: &[u8], max_entries: usize) -> Result<Vec<Vec<u8>>, PackageError> {
    let malformed = |what: &str| PackageError::NotAZip(format!("malformed central directory: {what}"));
    const EOCD: &[u8] = b"PK\x05\x06";
    let search_from = bytes.len().saturating_sub(22 + 65_535);
    let eocd = bytes[search_from..]
        .windows(4)
        .rposition(|w| w == EOCD)
        .map(|i| i + search_from)
        .ok_or_else(|| malformed("no end-of-central-directory record"))?;
    let mut count = u16_at(bytes, eocd + 10).ok_or_else(|| malformed("truncated end record"))? as u64;
    let mut size = u32_at(bytes, eocd + 12).ok_or_else(|| malformed("truncated end record"))?;
    let mut offset = u32_at(bytes, eocd + 16).ok_or_else(|| malformed("truncated end record"))?;
    let mut end_of_directory = eocd;
    if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
        // Zip64: the locator sits just before the end record and points at the zip64 end record.
        let locator = eocd.checked_sub(20).ok_or_else(|| malformed("missing zip64 locator"))?;
        if bytes.get(locator..locator + 4) != Some(b"PK\x06\x07".as_slice()) {
            return Err(malformed("missing zip64 locator"));
        }
        let record = usize::try_from(u64_at(bytes, locator + 8).ok_or_else(|| malformed("zip64 locator"))?)
            .map_err(|_| malformed("zip64 record offset"))?;
        if bytes.get(record..record + 4) != Some(b"PK\x06\x06".as_slice()) {
            return Err(malformed("bad zip64 end record"));
        }
        count = u64_at(bytes, record + 32).ok_or_else(|| malformed("zip64 end record"))?;
        size = u64_at(bytes, record + 40).ok_or_else(|| malformed("zip64 end record"))?;
        offset = u64_at(bytes, record + 48).ok_or_else(|| malformed("zip64 end record"))?;
        end_of_directory = record;
    }
    if count > max_entries as u64 {
        return Err(PackageError::TooManyEntries {
            count: usize::try_from(count).unwrap_or(usize::MAX),
            limit: max_entries,
        });
    }
    // Data prepended to the archive shifts every offset; locate the directory from its end, as zip readers do.
    let start = (end_of_directory as u64)
        .checked_sub(size)
        .ok_or_else(|| malformed("directory larger than the file"))?;
    let mut at = usize::try_from(if start >= offset { start } else { offset }).map_err(|_| malformed("offset"))?;
    let mut names = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        if bytes.get(at..at + 4) != Some(b"PK\x01\x02".as_slice()) {
            return Err(malformed("bad central directory header"));
        }
        let name_len = u16_at(bytes, at + 28).ok_or_else(|| malformed("truncated header"))?;
        let extra_len = u16_at(bytes, at + 30).ok_or_else(|| malformed("truncated header"))?;
        let comment_len = u16_at(bytes, at + 32).ok_or_else(|| malformed("truncated header"))?;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| malformed("truncated name"))?;
        names.push(name.to_vec());
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(names)
}

/// Rejects names that could escape an extraction directory or that two tools could read differently.
fn check_entry_name(name: &str) -> Result<(), PackageError> {
    match unsafe_entry_name(name) {
        Some(reason) => Err(PackageError::UnsafePath {
            entry: name.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Why a zip entry name is unsafe to extract (it could escape the extraction directory, or two tools could read it
/// differently), or `None` when it is fine. Shared by every reader of plugin archives (packages and bundles).
pub fn unsafe_entry_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the name is empty");
    }
    if name.contains('\0') {
        return Some("the name contains a NUL byte");
    }
    if name.contains('\\') {
        return Some("backslashes are not path separators in a zip; use `/`");
    }
    if name.starts_with('/') {
        return Some("absolute paths are not allowed");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Some("drive-letter paths are not allowed");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    trimmed.split('/').find_map(|component| match component {
        ".." => Some("`..` components (path traversal) are not allowed"),
        "." => Some("`.` components are not allowed"),
        "" => Some("empty path components (`//`) are not allowed"),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert!(check_entry_name("manifest.yaml").is_ok());
        assert!(check_entry_name("_assets/icon.svg").is_ok());
        assert!(check_entry_name("tools/").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "C:/x", "a\\b"] {
            assert!(check_entry_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
