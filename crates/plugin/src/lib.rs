//! The `.difypkg` plugin package format, compatible with Dify's plugin daemon.
//!
//! This crate owns everything about a package as bytes and files, and nothing about installing or running it:
//! - [`decode`]: reading a package defensively ([`DecodeLimits`]: size, entry count, zip bombs, unsafe names,
//!   symlinks, duplicates) into a [`PluginPackage`] with its validated [`Manifest`], [`Declarations`] (tool
//!   providers typed into toolplane-core entities), assets, readmes, checksum and unique identifier;
//! - [`checksum_files`] / [`checksum_package`]: the original's checksum, bit for bit;
//! - [`PluginUniqueIdentifier`], the `author/name:version@checksum` identifier;
//! - [`sign`] / [`verify`] and [`VerifierConfig`]: RSA-4096 PKCS#1 v1.5 signatures in the zip comment, the bundled
//!   official langgenius key, and the daemon's signature policy;
//! - [`package_dir`]: building a package from a plugin folder (`.difyignore`, else `.gitignore`);
//! - [`scaffold_tool_plugin`]: `plugin init` for a working Python tool plugin.

mod archive;
mod checksum;
mod declaration;
mod decode;
mod error;
mod identifier;
mod manifest;
mod package;
mod scaffold;
mod signature;

/// Compiles a validation pattern taken from the original's Go source, with Go's meaning: RE2's `\d`, `\w` and `\s`
/// are ASCII, so these are compiled without Unicode classes. That is also what keeps them small: with Unicode,
/// `\w{1,16}` alone compiled to about 2 MB, and these patterns live for the life of the process.
fn go_pattern(pattern: &str) -> regex::Regex {
    // Every caller passes a constant pattern that the crate's tests compile and exercise.
    #[allow(clippy::expect_used)]
    regex::RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .expect("a constant pattern that can only match ASCII")
}

pub use archive::{DEFAULT_MAX_PACKAGE_SIZE, DecodeLimits, PackageFile, unsafe_entry_name};
pub use checksum::{checksum_files, checksum_package};
pub use declaration::{Declarations, GenericDeclaration, ToolDeclaration};
pub use decode::{ASSETS_DIR, PluginPackage, decode};
pub use error::{ManifestErrors, ManifestFieldError, PackageError};
pub use identifier::{IdentifierError, PluginUniqueIdentifier, UNIQUE_IDENTIFIER_PATTERN, is_uuid, plugin_identity};
pub use manifest::{
    AUTHOR_PATTERN, EnabledPermission, Manifest, Meta, ModelPermission, NAME_PATTERN, PLUGIN_TAGS, Permissions,
    PluginCategory, PluginExtensions, Resource, Runner, StoragePermission, VERSION_PATTERN,
};
pub use package::{Progress, ProgressStage, package_dir};
pub use scaffold::{ScaffoldError, ScaffoldOptions, scaffold_tool_plugin};
pub use signature::{
    AuthorizedCategory, PublicKeyPem, SignatureCheck, SignatureError, SignatureInfo, SigningKeyPair, VERIFICATION_FILE,
    Verification, VerificationResult, VerifierConfig, generate_signing_key_pair, sign, sign_at, verify,
    verify_with_limits,
};
