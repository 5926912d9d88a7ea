//! Errors of package decoding and building.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Why a package (or a plugin folder) was rejected.
#[derive(Debug, Error)]
pub enum PackageError {
    #[error(
        "the plugin package is {size} bytes, more than the limit of {limit} bytes (MAX_PLUGIN_PACKAGE_SIZE); \
         make the package smaller or raise the limit"
    )]
    PackageTooLarge { size: u64, limit: u64 },

    #[error("not a valid difypkg (zip) archive: {0}")]
    NotAZip(String),

    #[error("the package has {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },

    #[error("entry {entry:?} cannot be read: {reason}")]
    BadEntry { entry: String, reason: String },

    #[error("entry {entry:?} has an unsafe path: {reason}")]
    UnsafePath { entry: String, reason: String },

    #[error("entry {0:?} appears more than once in the package; every path must be unique")]
    DuplicateEntry(String),

    #[error("entry {0:?} is a symbolic link; packages may contain regular files only")]
    Symlink(String),

    #[error(
        "plugin package size is too large: the uncompressed size passes {limit} bytes at entry {entry:?}; \
         please ensure the uncompressed size is less than {limit} bytes"
    )]
    UncompressedTooLarge { entry: String, limit: u64 },

    #[error(
        "entry {entry:?} decompresses {ratio} times larger than it is stored (limit {limit}); \
         this looks like a zip bomb"
    )]
    SuspiciousCompression { entry: String, ratio: u64, limit: u64 },

    #[error("{path} is missing from the package (referenced by {referenced_by})")]
    MissingFile { path: String, referenced_by: String },

    #[error("{path} is not valid YAML: {message}")]
    Yaml { path: String, message: String },

    #[error(transparent)]
    Manifest(#[from] ManifestErrors),

    #[error("{path}: {message}")]
    Declaration { path: String, message: String },

    #[error(
        ".verification.dify.json is invalid: {0}; expected {{\"authorized_category\": \"langgenius|partner|community\"}}"
    )]
    Verification(String),

    #[error("{field} refers to {file:?}, which is not in _assets/")]
    AssetMissing { field: String, file: String },

    #[error(transparent)]
    Identifier(#[from] crate::identifier::IdentifierError),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{} is a symbolic link; plugin folders may contain regular files only (replace it or list it in .difyignore)",
        .0.display()
    )]
    FolderSymlink(PathBuf),

    #[error(
        "Plugin package size is too large. Please ensure the uncompressed size is less than {limit} bytes.\n\
         Packaged file info:\n{largest}"
    )]
    FolderTooLarge { limit: u64, largest: String },

    #[error("writing the package failed: {0}")]
    Write(String),
}

/// One problem found in `manifest.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFieldError {
    /// Dotted path of the field, e.g. `meta.runner.language`.
    pub field: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for ManifestFieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.field, self.problem)
    }
}

/// Every problem found in `manifest.yaml`, in field order.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ManifestErrors(pub Vec<ManifestFieldError>);

impl ManifestErrors {
    /// Whether a problem was reported for `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("manifest.yaml is invalid: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
