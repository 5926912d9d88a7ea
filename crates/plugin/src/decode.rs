//! Decoding a `.difypkg` into a [`PluginPackage`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::archive::{Archive, DecodeLimits, PackageFile, read_archive};
use crate::checksum::checksum_files;
use crate::declaration::{self, Declarations};
use crate::error::PackageError;
use crate::identifier::PluginUniqueIdentifier;
use crate::manifest::Manifest;
use crate::signature::{
    PublicKeyPem, SignatureError, SignatureInfo, Verification, VerificationResult, read_verification, verify_archive,
};

/// The directory of icons and other media.
pub const ASSETS_DIR: &str = "_assets/";

static README_NAME: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(r"^README_([a-z]{2}_[A-Za-z]{2,})\.md$"));

/// A decoded and validated plugin package.
#[derive(Debug, Clone)]
pub struct PluginPackage {
    archive: Archive,
    /// The validated `manifest.yaml`.
    pub manifest: Manifest,
    /// Provider declarations, tool providers typed.
    pub declarations: Declarations,
    /// The package checksum (64 hex digits).
    pub checksum: String,
    /// `author/name:version@checksum`.
    pub unique_identifier: PluginUniqueIdentifier,
    /// The signature in the zip comment, if any (not yet verified: see [`PluginPackage::verify_signature`]).
    pub signature: Option<SignatureInfo>,
    /// `.verification.dify.json`, if present.
    pub verification: Option<Verification>,
}

/// Reads, checks and validates a package: limits and entry names, the manifest, every declaration it references,
/// the checksum and unique identifier, and the verification file. The signature is parsed but not verified.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<PluginPackage, PackageError> {
    let archive = read_archive(bytes, limits)?;
    let manifest_bytes = archive.file("manifest.yaml").ok_or_else(|| PackageError::MissingFile {
        path: "manifest.yaml".into(),
        referenced_by: "the package root".into(),
    })?;
    let manifest = Manifest::parse(manifest_bytes)?;
    let declarations = declaration::load(&archive, &manifest)?;
    let checksum = checksum_files(&archive.files);
    let unique_identifier =
        PluginUniqueIdentifier::new(&manifest.author, &manifest.name, &manifest.version, &checksum)?;
    let signature = SignatureInfo::from_comment(&archive.comment);
    let verification = read_verification(&archive)?;
    Ok(PluginPackage {
        archive,
        manifest,
        declarations,
        checksum,
        unique_identifier,
        signature,
        verification,
    })
}

impl PluginPackage {
    /// Every file, in archive order.
    pub fn files(&self) -> &[PackageFile] {
        &self.archive.files
    }

    /// The content of one file.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.archive.file(path)
    }

    /// The raw zip comment.
    pub fn comment(&self) -> &[u8] {
        &self.archive.comment
    }

    /// `author/name`.
    pub fn plugin_id(&self) -> &str {
        self.unique_identifier.plugin_id()
    }

    /// Asset names relative to `_assets/` (e.g. `icon.svg`), in archive order.
    pub fn asset_names(&self) -> Vec<&str> {
        self.archive
            .files
            .iter()
            .filter_map(|f| f.path.strip_prefix(ASSETS_DIR))
            .collect()
    }

    /// Assets as (name relative to `_assets/`, content), in archive order.
    pub fn assets(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.archive
            .files
            .iter()
            .filter_map(|f| f.path.strip_prefix(ASSETS_DIR).map(|name| (name, f.content.as_slice())))
    }

    /// One asset by its name relative to `_assets/`.
    pub fn asset(&self, name: &str) -> Option<&[u8]> {
        self.archive.file(&format!("{ASSETS_DIR}{name}"))
    }

    /// Readmes by language (`AvailableI18nReadme`): `en_US` from `README.md`, others from
    /// `readme/README_<lang>.md` (e.g. `README_zh_Hans.md`). Empty when the package has no `README.md`, which the
    /// original treats as "no readme".
    pub fn readmes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(en) = self.archive.file("README.md") else {
            return out;
        };
        out.insert("en_US".to_owned(), String::from_utf8_lossy(en).into_owned());
        for file in &self.archive.files {
            let Some(name) = file.path.strip_prefix("readme/") else {
                continue;
            };
            if let Some(captures) = README_NAME.captures(name) {
                out.insert(
                    captures[1].to_owned(),
                    String::from_utf8_lossy(&file.content).into_owned(),
                );
            }
        }
        out
    }

    /// Checks that every icon the manifest and declarations name exists under `_assets/` (`CheckAssetsValid`, run
    /// by the original's packager).
    pub fn check_assets(&self) -> Result<(), PackageError> {
        let mut wanted: Vec<(String, String)> = vec![("icon".into(), self.manifest.icon.clone())];
        if let Some(dark) = &self.manifest.icon_dark {
            wanted.push(("icon_dark".into(), dark.clone()));
        }
        if let Some(tool) = &self.declarations.tool {
            wanted.push((
                format!("{}: identity.icon", tool.path),
                tool.provider.identity.icon.clone(),
            ));
        }
        for declaration in [&self.declarations.trigger, &self.declarations.datasource]
            .into_iter()
            .flatten()
        {
            if let Some(icon) = declaration.raw.pointer("/identity/icon").and_then(|v| v.as_str()) {
                wanted.push((format!("{}: identity.icon", declaration.path), icon.to_owned()));
            }
        }
        if let Some(model) = &self.declarations.model {
            for key in ["icon_small", "icon_large"] {
                if let Some(icons) = model.raw.get(key).and_then(|v| v.as_object()) {
                    for (lang, icon) in icons {
                        if let Some(icon) = icon.as_str() {
                            wanted.push((format!("{}: {key}.{lang}", model.path), icon.to_owned()));
                        }
                    }
                }
            }
        }
        for (field, file) in wanted {
            if !file.is_empty() && self.asset(&file).is_none() {
                return Err(PackageError::AssetMissing { field, file });
            }
        }
        Ok(())
    }

    /// Verifies the signature against `public_keys`.
    pub fn verify_signature(&self, public_keys: &[PublicKeyPem]) -> Result<VerificationResult, SignatureError> {
        verify_archive(&self.archive, public_keys)
    }
}
