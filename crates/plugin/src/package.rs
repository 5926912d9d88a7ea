//! Building a package from a plugin folder (`dify plugin package`).

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::archive::DecodeLimits;
use crate::decode::decode;
use crate::error::PackageError;

/// The step [`package_dir`] is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStage {
    /// Walking the folder; `files_total` grows.
    Scanning,
    /// Compressing files into the archive.
    Compressing,
    /// Decoding the finished package to validate it.
    Validating,
    /// Finished.
    Done,
}

/// A progress report of [`package_dir`], for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub stage: ProgressStage,
    /// Files handled so far in this stage.
    pub files_done: usize,
    /// Files to package (known once scanning is done).
    pub files_total: usize,
    /// Bytes handled so far in this stage.
    pub bytes_done: u64,
    /// Total bytes to package (known once scanning is done).
    pub bytes_total: u64,
    /// The file being handled, relative to the folder.
    pub current: String,
}

struct Entry {
    relative: String,
    absolute: PathBuf,
    size: u64,
}

/// Packages the plugin folder `dir` into `.difypkg` bytes.
///
/// Files matching `.difyignore` (or `.gitignore` when there is no `.difyignore`; gitignore syntax, from the folder
/// root) are left out; the rest are stored deflated, sorted by path, as the original packager does. The total
/// uncompressed size must not exceed `max_size` (the error lists the five largest files). The result is decoded
/// again before it is returned, so a package that this function returns passes [`decode`] with
/// [`DecodeLimits::with_max_size`]`(max_size)` and every icon the manifest names exists in `_assets/`.
/// Symbolic links that are not ignored are refused rather than followed.
pub fn package_dir(dir: &Path, max_size: u64, mut progress: impl FnMut(Progress)) -> Result<Vec<u8>, PackageError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PackageError::Io { path, source }
    };
    let ignore = load_ignore(dir)?;
    let mut entries = Vec::new();
    walk(dir, dir, &ignore, &mut entries, &mut progress)?;
    entries.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));

    let bytes_total: u64 = entries.iter().map(|e| e.size).sum();
    if bytes_total > max_size {
        let mut largest: Vec<&Entry> = entries.iter().collect();
        largest.sort_by_key(|e| std::cmp::Reverse(e.size));
        let listing = largest
            .iter()
            .take(5)
            .enumerate()
            .map(|(i, e)| format!("{}. name: {}, size: {} bytes\n", i + 1, e.relative, e.size))
            .collect();
        return Err(PackageError::FolderTooLarge {
            limit: max_size,
            largest: listing,
        });
    }

    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let mut bytes_done = 0u64;
    for (index, entry) in entries.iter().enumerate() {
        progress(Progress {
            stage: ProgressStage::Compressing,
            files_done: index,
            files_total: entries.len(),
            bytes_done,
            bytes_total,
            current: entry.relative.clone(),
        });
        let content = fs::read(&entry.absolute).map_err(io(&entry.absolute))?;
        bytes_done += content.len() as u64;
        if bytes_done > max_size {
            // The file grew while we were packaging.
            return Err(PackageError::FolderTooLarge {
                limit: max_size,
                largest: format!("1. name: {}, size: {} bytes\n", entry.relative, content.len()),
            });
        }
        writer
            .start_file(entry.relative.as_str(), options)
            .map_err(|e| PackageError::Write(format!("{}: {e}", entry.relative)))?;
        writer
            .write_all(&content)
            .map_err(|e| PackageError::Write(format!("{}: {e}", entry.relative)))?;
    }
    let bytes = writer
        .finish()
        .map_err(|e| PackageError::Write(e.to_string()))?
        .into_inner();

    progress(Progress {
        stage: ProgressStage::Validating,
        files_done: entries.len(),
        files_total: entries.len(),
        bytes_done,
        bytes_total,
        current: String::new(),
    });
    let limits = DecodeLimits {
        max_package_size: max_size.max(bytes.len() as u64),
        ..DecodeLimits::with_max_size(max_size)
    };
    decode(&bytes, &limits)?.check_assets()?;
    progress(Progress {
        stage: ProgressStage::Done,
        files_done: entries.len(),
        files_total: entries.len(),
        bytes_done,
        bytes_total,
        current: String::new(),
    });
    Ok(bytes)
}

/// `.difyignore`, else `.gitignore`: blank lines and `#` comments skipped, each line trimmed, as the original.
fn load_ignore(dir: &Path) -> Result<Gitignore, PackageError> {
    let mut builder = GitignoreBuilder::new(dir);
    for name in [".difyignore", ".gitignore"] {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().map(str::trim) {
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    builder
                        .add_line(Some(path.clone()), line)
                        .map_err(|e| PackageError::Declaration {
                            path: name.to_owned(),
                            message: format!("bad pattern {line:?}: {e}"),
                        })?;
                }
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(PackageError::Io { path, source }),
        }
    }
    builder.build().map_err(|e| PackageError::Declaration {
        path: ".difyignore".into(),
        message: e.to_string(),
    })
}

fn walk(
    root: &Path,
    dir: &Path,
    ignore: &Gitignore,
    out: &mut Vec<Entry>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), PackageError> {
    let read = fs::read_dir(dir).map_err(|source| PackageError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut children = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| PackageError::Io {
            path: dir.to_owned(),
            source,
        })?;
        children.push(entry.path());
    }
    children.sort();
    for path in children {
        let meta = fs::symlink_metadata(&path).map_err(|source| PackageError::Io {
            path: path.clone(),
            source,
        })?;
        let relative_path = path.strip_prefix(root).unwrap_or(&path);
        let is_dir = meta.is_dir();
        if ignore.matched(relative_path, is_dir).is_ignore() {
            continue;
        }
        if meta.file_type().is_symlink() {
            return Err(PackageError::FolderSymlink(path));
        }
        if is_dir {
            walk(root, &path, ignore, out, progress)?;
        } else if meta.is_file() {
            let relative = relative_path
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(Entry {
                relative: relative.clone(),
                absolute: path.clone(),
                size: meta.len(),
            });
            progress(Progress {
                stage: ProgressStage::Scanning,
                files_done: out.len(),
                files_total: out.len(),
                bytes_done: 0,
                bytes_total: 0,
                current: relative,
            });
        }
    }
    Ok(())
}
