//! Reading a `.difybundle`: a zip holding a `manifest.yaml` that lists dependencies, and, for `package`
//! dependencies, the embedded `.difypkg` files under `_assets/`.
//!
//! The manifest's `dependencies` is a list of `{type, value}`:
//! - `github`: `value.repo_pattern` = `owner/repo:release[/asset]`;
//! - `marketplace`: `value.marketplace_pattern` = `organization/plugin:version`;
//! - `package`: `value.path` names a file under `_assets/` (the bundle CLI names it after the package's checksum).
//!
//! Nothing in the archive is trusted: every entry name is checked (no absolute paths, `..`, backslashes, symlinks),
//! the entry count is capped, and only the manifest and the referenced packages are decompressed, each counted
//! against its own limit and all of them against `MAX_BUNDLE_PACKAGE_SIZE`, so a zip bomb costs at most the limits.

use std::collections::HashSet;
use std::io::{Cursor, Read};

use serde_json::{Value, json};
use thiserror::Error;
use zip::ZipArchive;

/// Most entries a bundle may hold.
pub(crate) const MAX_BUNDLE_ENTRIES: usize = 4096;
/// Largest accepted `manifest.yaml` of a bundle.
pub(crate) const MAX_BUNDLE_MANIFEST_SIZE: u64 = 1024 * 1024;
/// The folder of embedded packages.
const ASSETS_DIR: &str = "_assets/";
const MANIFEST: &str = "manifest.yaml";
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// Limits applied while reading a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BundleLimits {
    /// `MAX_BUNDLE_PACKAGE_SIZE`: the largest bundle, and the largest sum of everything decompressed from it.
    pub max_bundle_size: u64,
    /// `MAX_PLUGIN_PACKAGE_SIZE`: the largest embedded package.
    pub max_package_size: u64,
}

/// Why a bundle was rejected. Every variant is the uploader's fault (`PluginDaemonBadRequestError`).
#[derive(Debug, Error)]
pub enum BundleError {
    /// The bundle is larger than `MAX_BUNDLE_PACKAGE_SIZE`.
    #[error(
        "the plugin bundle is {size} bytes, more than MAX_BUNDLE_PACKAGE_SIZE ({limit} bytes); make the bundle \
         smaller or raise the limit"
    )]
    TooLarge { size: u64, limit: u64 },

    /// The upload is not a zip archive.
    #[error("not a valid difybundle (zip) archive: {0}")]
    NotAZip(String),

    /// More entries than [`MAX_BUNDLE_ENTRIES`].
    #[error("the bundle has {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },

    /// An entry's header or content cannot be read.
    #[error("bundle entry {entry:?} cannot be read: {reason}")]
    BadEntry { entry: String, reason: String },

    /// An entry name that could escape an extraction directory.
    #[error("bundle entry {entry:?} has an unsafe path: {reason}")]
    UnsafePath { entry: String, reason: String },

    /// An entry is a symbolic link.
    #[error("bundle entry {0:?} is a symbolic link; bundles may contain regular files only")]
    Symlink(String),

    /// An entry decompresses past its limit.
    #[error("bundle entry {entry:?} decompresses to more than {limit} bytes ({variable}); this bundle is too large")]
    EntryTooLarge {
        entry: String,
        limit: u64,
        variable: &'static str,
    },

    /// The bundle has no `manifest.yaml`.
    #[error(
        "the bundle has no manifest.yaml at its root; a .difybundle is built with `dify bundle package` (upload a \
         single .difypkg with install/upload/package instead)"
    )]
    MissingManifest,

    /// `manifest.yaml` is not YAML or does not have the bundle's shape.
    #[error("the bundle's manifest.yaml is invalid: {0}")]
    Manifest(String),

    /// A dependency is malformed.
    #[error("dependency #{index} of the bundle ({kind}): {reason}")]
    Dependency { index: usize, kind: String, reason: String },
}

/// One dependency of a bundle, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dependency {
    /// A release asset of a GitHub repository.
    Github(GithubDependency),
    /// A marketplace plugin.
    Marketplace(MarketplaceDependency),
    /// A package embedded in the bundle.
    Package(PackageDependency),
}

/// `github`: `owner/repo:release[/asset]`, split as the original splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GithubDependency {
    pub owner: String,
    pub repo: String,
    pub release: String,
    /// Empty when the pattern names no asset.
    pub asset: String,
}

/// `marketplace`: `organization/plugin:version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarketplaceDependency {
    pub organization: String,
    pub plugin: String,
    pub version: String,
}

/// `package`: an embedded `.difypkg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageDependency {
    /// The path under `_assets/`, as declared.
    pub path: String,
    /// The package file.
    pub bytes: Vec<u8>,
}

impl GithubDependency {
    /// The `value` Dify reads: `{repo_address, repo, release, packages}`.
    pub fn to_json(&self) -> Value {
        json!({
            "repo_address": format!("https://github.com/{}/{}", self.owner, self.repo),
            "repo": format!("{}/{}", self.owner, self.repo),
            "release": self.release,
            "packages": self.asset,
        })
    }
}

impl MarketplaceDependency {
    /// The `value` Dify reads: `{organization, plugin, version}`.
    pub fn to_json(&self) -> Value {
        json!({"organization": self.organization, "plugin": self.plugin, "version": self.version})
    }
}

/// Reads a bundle: checks the archive, parses the manifest and loads every embedded package it references, in
/// declaration order.
pub(crate) fn read_bundle(bytes: &[u8], limits: &BundleLimits) -> Result<Vec<Dependency>, BundleError> {
    let size = bytes.len() as u64;
    if size > limits.max_bundle_size {
        return Err(BundleError::TooLarge {
            size,
            limit: limits.max_bundle_size,
        });
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| BundleError::NotAZip(e.to_string()))?;
    if zip.len() > MAX_BUNDLE_ENTRIES {
        return Err(BundleError::TooManyEntries {
            count: zip.len(),
            limit: MAX_BUNDLE_ENTRIES,
        });
    }
    let names = check_entries(&mut zip)?;
    if !names.contains(MANIFEST) {
        return Err(BundleError::MissingManifest);
    }
    let mut budget = Budget {
        remaining: limits.max_bundle_size,
    };
    let manifest = read_entry(
        &mut zip,
        MANIFEST,
        MAX_BUNDLE_MANIFEST_SIZE,
        "the bundle manifest limit",
        &mut budget,
    )?;
    let declared = parse_manifest(&manifest)?;

    let mut dependencies = Vec::with_capacity(declared.len());
    for (index, dependency) in declared.into_iter().enumerate() {
        dependencies.push(match dependency {
            Declared::Github(d) => Dependency::Github(d),
            Declared::Marketplace(d) => Dependency::Marketplace(d),
            Declared::Package(path) => {
                let entry = format!("{ASSETS_DIR}{path}");
                if !names.contains(&entry) {
                    return Err(BundleError::Dependency {
                        index,
                        kind: "package".into(),
                        reason: format!("path {path:?} refers to {entry}, which is not in the bundle"),
                    });
                }
                let bytes = read_entry(
                    &mut zip,
                    &entry,
                    limits.max_package_size,
                    "MAX_PLUGIN_PACKAGE_SIZE",
                    &mut budget,
                )?;
                Dependency::Package(PackageDependency { path, bytes })
            }
        });
    }
    Ok(dependencies)
}

/// What is left of `MAX_BUNDLE_PACKAGE_SIZE` for decompressed content.
struct Budget {
    remaining: u64,
}

/// Checks every entry's name and type; answers the names of the file entries.
fn check_entries(zip: &mut ZipArchive<Cursor<&[u8]>>) -> Result<HashSet<String>, BundleError> {
    let mut names = HashSet::with_capacity(zip.len());
    for index in 0..zip.len() {
        let entry = zip.by_index(index).map_err(|e| BundleError::BadEntry {
            entry: format!("#{index}"),
            reason: e.to_string(),
        })?;
        let name = entry
            .name()
            .map_err(|e| BundleError::BadEntry {
                entry: String::from_utf8_lossy(entry.name_raw()).into_owned(),
                reason: format!("the name is not valid UTF-8: {e}"),
            })?
            .into_owned();
        check_entry_name(&name)?;
        if entry.unix_mode().is_some_and(|mode| mode & S_IFMT == S_IFLNK) {
            return Err(BundleError::Symlink(name));
        }
        if !name.ends_with('/') {
            names.insert(name);
        }
    }
    Ok(names)
}

/// Decompresses one entry, failing as soon as it passes `limit` or the bundle's remaining budget.
fn read_entry(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    variable: &'static str,
    budget: &mut Budget,
) -> Result<Vec<u8>, BundleError> {
    let (cap, cap_variable) = if budget.remaining < limit {
        (budget.remaining, "MAX_BUNDLE_PACKAGE_SIZE")
    } else {
        (limit, variable)
    };
    let entry = zip.by_name(name).map_err(|e| BundleError::BadEntry {
        entry: name.to_owned(),
        reason: e.to_string(),
    })?;
    let mut content = Vec::new();
    // One byte past the cap is enough to know the cap is passed.
    let read = entry
        .take(cap.saturating_add(1))
        .read_to_end(&mut content)
        .map_err(|e| BundleError::BadEntry {
            entry: name.to_owned(),
            reason: e.to_string(),
        })? as u64;
    if read > cap {
        return Err(BundleError::EntryTooLarge {
            entry: name.to_owned(),
            limit: cap,
            variable: cap_variable,
        });
    }
    budget.remaining -= read;
    Ok(content)
}

/// A dependency as the manifest declares it (packages not yet loaded).
enum Declared {
    Github(GithubDependency),
    Marketplace(MarketplaceDependency),
    Package(String),
}

fn parse_manifest(yaml: &[u8]) -> Result<Vec<Declared>, BundleError> {
    let manifest: Value = serde_saphyr::from_slice(yaml).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let Value::Object(manifest) = manifest else {
        return Err(BundleError::Manifest("expected a mapping at the top level".into()));
    };
    if let Some(kind) = manifest.get("type").and_then(Value::as_str)
        && kind != "bundle"
    {
        return Err(BundleError::Manifest(format!(
            "type is {kind:?}, expected \"bundle\"{}",
            if kind == "plugin" {
                "; this is a plugin package, upload it with install/upload/package"
            } else {
                ""
            }
        )));
    }
    let dependencies = match manifest.get("dependencies") {
        Some(Value::Array(list)) => list,
        Some(Value::Null) | None => {
            return Err(BundleError::Manifest(
                "dependencies is missing; list the bundle's plugins there".into(),
            ));
        }
        Some(_) => return Err(BundleError::Manifest("dependencies must be a list".into())),
    };
    dependencies
        .iter()
        .enumerate()
        .map(|(index, d)| parse_dependency(index, d))
        .collect()
}

fn parse_dependency(index: usize, dependency: &Value) -> Result<Declared, BundleError> {
    let kind = dependency.get("type").and_then(Value::as_str).unwrap_or_default();
    let fail = |reason: String| BundleError::Dependency {
        index,
        kind: if kind.is_empty() {
            "no type".into()
        } else {
            kind.to_owned()
        },
        reason,
    };
    let field = |name: &str| -> Result<&str, BundleError> {
        dependency
            .pointer(&format!("/value/{name}"))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| fail(format!("value.{name} is required and must be a string")))
    };
    match kind {
        "github" => {
            let pattern = field("repo_pattern")?;
            let parts = split_pattern(pattern);
            match parts.as_slice() {
                [owner, repo, release] | [owner, repo, release, _] if all_filled(&parts) => {
                    Ok(Declared::Github(GithubDependency {
                        owner: (*owner).to_owned(),
                        repo: (*repo).to_owned(),
                        release: (*release).to_owned(),
                        asset: parts.get(3).map(|a| (*a).to_owned()).unwrap_or_default(),
                    }))
                }
                _ => Err(fail(format!(
                    "repo_pattern {pattern:?} must look like `owner/repo:release/asset.difypkg`"
                ))),
            }
        }
        "marketplace" => {
            let pattern = field("marketplace_pattern")?;
            let parts = split_pattern(pattern);
            match parts.as_slice() {
                [organization, plugin, version] if all_filled(&parts) => {
                    Ok(Declared::Marketplace(MarketplaceDependency {
                        organization: (*organization).to_owned(),
                        plugin: (*plugin).to_owned(),
                        version: (*version).to_owned(),
                    }))
                }
                _ => Err(fail(format!(
                    "marketplace_pattern {pattern:?} must look like `organization/plugin:version`"
                ))),
            }
        }
        "package" => {
            let path = field("path")?;
            check_entry_name(&format!("{ASSETS_DIR}{path}")).map_err(|e| fail(e.to_string()))?;
            if path.ends_with('/') {
                return Err(fail(format!("path {path:?} names a folder, not a .difypkg file")));
            }
            Ok(Declared::Package(path.to_owned()))
        }
        _ => Err(fail(format!(
            "type is {kind:?}; expected one of github, marketplace, package"
        ))),
    }
}

/// Splits at `:` and then at `/`, as the original does: `a/b:1.0.0/x` → `[a, b, 1.0.0, x]`.
fn split_pattern(pattern: &str) -> Vec<&str> {
    pattern.split(':').flat_map(|part| part.split('/')).collect()
}

fn all_filled(parts: &[&str]) -> bool {
    parts.iter().all(|p| !p.trim().is_empty())
}

/// Rejects names that could escape an extraction directory or that two tools could read differently.
fn check_entry_name(name: &str) -> Result<(), BundleError> {
    match toolplane_plugin::unsafe_entry_name(name) {
        Some(reason) => Err(BundleError::UnsafePath {
            entry: name.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    const LIMITS: BundleLimits = BundleLimits {
        max_bundle_size: 1024 * 1024,
        max_package_size: 64 * 1024,
    };

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content) in files {
            writer.start_file(*name, SimpleFileOptions::default()).unwrap();
            writer.write_all(content).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_dependencies_in_order() {
        let manifest = b"type: bundle\nname: b\ndependencies:\n\
            - type: github\n  value:\n    repo_pattern: octo/tools:1.2.3/tools.difypkg\n\
            - type: package\n  value:\n    path: abc\n\
            - type: marketplace\n  value:\n    marketplace_pattern: langgenius/openai:^0.1.0\n";
        let bundle = zip_of(&[
            ("manifest.yaml", manifest),
            ("_assets/abc", b"pkg"),
            ("README.md", b"hi"),
        ]);
        let deps = read_bundle(&bundle, &LIMITS).unwrap();
        assert_eq!(deps.len(), 3);
        let Dependency::Github(github) = &deps[0] else {
            panic!("{deps:?}")
        };
        assert_eq!(
            github.to_json(),
            json!({"repo_address": "https://github.com/octo/tools", "repo": "octo/tools", "release": "1.2.3",
                   "packages": "tools.difypkg"})
        );
        assert_eq!(
            deps[1],
            Dependency::Package(PackageDependency {
                path: "abc".into(),
                bytes: b"pkg".to_vec()
            })
        );
        let Dependency::Marketplace(market) = &deps[2] else {
            panic!("{deps:?}")
        };
        assert_eq!(
            market.to_json(),
            json!({"organization": "langgenius", "plugin": "openai", "version": "^0.1.0"})
        );
    }

    #[test]
    fn rejects_bad_bundles() {
        let err = |files: &[(&str, &[u8])]| read_bundle(&zip_of(files), &LIMITS).unwrap_err().to_string();
        assert!(err(&[("README.md", b"x")]).contains("no manifest.yaml"));
        assert!(err(&[("manifest.yaml", b"type: plugin\n")]).contains("install/upload/package"));
        assert!(err(&[("manifest.yaml", b"dependencies: 3\n")]).contains("must be a list"));
        assert!(err(&[("manifest.yaml", b": : :\n  - [")]).contains("manifest.yaml is invalid"));
        let traversal = b"dependencies:\n- type: package\n  value:\n    path: ../../etc/passwd\n";
        assert!(err(&[("manifest.yaml", traversal)]).contains("path traversal"));
        let missing = b"dependencies:\n- type: package\n  value:\n    path: nope\n";
        assert!(err(&[("manifest.yaml", missing)]).contains("not in the bundle"));
        let unknown = b"dependencies:\n- type: ftp\n  value: {}\n";
        assert!(err(&[("manifest.yaml", unknown)]).contains("expected one of"));
        let short = b"dependencies:\n- type: marketplace\n  value:\n    marketplace_pattern: just-a-name\n";
        assert!(err(&[("manifest.yaml", short)]).contains("organization/plugin:version"));
        let ok = b"dependencies: []\n";
        assert!(err(&[("manifest.yaml", ok), ("../evil", b"x")]).contains("path traversal"));
        let big = vec![b'x'; 65 * 1024];
        let pkg = b"dependencies:\n- type: package\n  value:\n    path: big\n";
        assert!(err(&[("manifest.yaml", pkg), ("_assets/big", &big)]).contains("MAX_PLUGIN_PACKAGE_SIZE"));
        assert!(
            read_bundle(b"not a zip", &LIMITS)
                .unwrap_err()
                .to_string()
                .contains("not a valid difybundle")
        );
    }
}
