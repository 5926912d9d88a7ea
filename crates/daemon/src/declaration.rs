//! The plugin declaration JSON (the original's `PluginDeclaration`) and the media ids of `_assets` files.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use toolplane_plugin::PluginPackage;

/// The media id of an asset: `hex(sha256(bytes ‖ filename))` followed by the file's extension (e.g. `.svg`), as the
/// original stores icons under `PLUGIN_MEDIA_CACHE_PATH`.
pub fn media_id(filename: &str, bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update(filename.as_bytes());
    let ext = filename
        .rsplit_once('.')
        .filter(|(stem, ext)| !ext.contains('/') && !stem.is_empty())
        .map(|(_, ext)| format!(".{ext}"))
        .unwrap_or_default();
    format!("{}{ext}", hex::encode(hasher.finalize()))
}

/// A package's declaration as the daemon serves it: the manifest's fields, `verified`, `category`, and the
/// provider declarations under `tool`, `model`, `endpoint`, `agent_strategy`, `datasource`, `trigger`; every icon
/// that names an `_assets` file rewritten to that file's media id. Also returns the `(media id, bytes)` of every
/// asset, for the media bucket.
pub fn build_declaration(package: &PluginPackage, verified: bool) -> (Value, Vec<(String, Vec<u8>)>) {
    let declarations = &package.declarations;
    let providers = [
        ("tool", declarations.tool.as_ref().map(|d| d.raw.clone())),
        ("model", declarations.model.as_ref().map(|d| d.raw.clone())),
        ("endpoint", declarations.endpoint.as_ref().map(|d| d.raw.clone())),
        (
            "agent_strategy",
            declarations.agent_strategy.as_ref().map(|d| d.raw.clone()),
        ),
        ("datasource", declarations.datasource.as_ref().map(|d| d.raw.clone())),
        ("trigger", declarations.trigger.as_ref().map(|d| d.raw.clone())),
    ];
    let assets: Vec<(&str, &[u8])> = package.assets().collect();
    assemble_declaration(
        &package.manifest.raw,
        package.manifest.category().as_str(),
        providers,
        &assets,
        verified,
    )
}

/// [`build_declaration`] from parts: the manifest JSON, its category, the provider declarations by key, and the
/// `_assets` files by name. A remote-debugging plugin sends exactly these parts instead of a package.
pub(crate) fn assemble_declaration(
    manifest: &Value,
    category: &str,
    providers: impl IntoIterator<Item = (&'static str, Option<Value>)>,
    assets: &[(&str, &[u8])],
    verified: bool,
) -> (Value, Vec<(String, Vec<u8>)>) {
    let assets: Vec<(&str, String, &[u8])> = assets
        .iter()
        .map(|(name, bytes)| (*name, media_id(name, bytes), *bytes))
        .collect();
    let remap = |value: &mut Value| {
        if let Value::String(file) = value
            && let Some((_, id, _)) = assets.iter().find(|(name, _, _)| *name == file.as_str())
        {
            *file = id.clone();
        }
    };

    let mut root = match manifest {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    root.insert("verified".into(), Value::Bool(verified));
    root.insert("category".into(), Value::String(category.into()));
    root.entry("tags").or_insert_with(|| Value::Array(Vec::new()));
    for (key, value) in providers {
        if let Some(value) = value {
            root.insert(key.into(), value);
        }
    }

    for key in ["icon", "icon_dark"] {
        if let Some(v) = root.get_mut(key) {
            remap(v);
        }
    }
    for key in ["tool", "agent_strategy", "datasource", "trigger"] {
        for icon in ["icon", "icon_dark"] {
            if let Some(v) = root
                .get_mut(key)
                .and_then(|d| d.pointer_mut(&format!("/identity/{icon}")))
            {
                remap(v);
            }
        }
    }
    if let Some(model) = root.get_mut("model") {
        for key in ["icon_small", "icon_large", "icon_small_dark", "icon_large_dark"] {
            if let Some(Value::Object(langs)) = model.get_mut(key) {
                for v in langs.values_mut() {
                    remap(v);
                }
            }
        }
    }
    let media = assets.into_iter().map(|(_, id, bytes)| (id, bytes.to_vec())).collect();
    (Value::Object(root), media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_hash_content_and_name() {
        let a = media_id("icon.svg", b"<svg/>");
        assert!(a.ends_with(".svg") && a.len() == 64 + 4, "{a}");
        assert_ne!(a, media_id("other.svg", b"<svg/>"));
        assert_ne!(a, media_id("icon.svg", b"<svg></svg>"));
        let mut h = Sha256::new();
        h.update(b"<svg/>icon.svg");
        assert_eq!(a, format!("{}.svg", hex::encode(h.finalize())));
        assert_eq!(media_id("noext", b"x").len(), 64);
    }
}
