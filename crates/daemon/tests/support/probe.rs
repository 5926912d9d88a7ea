//! Copies of the runtime's probe plugin (`crates/runtime/tests/data/probe`, `dify_plugin` 0.7.4 on Python 3.11)
//! under other names, packaged: many distinct installed plugins for measurements. Shared by the daemon's dispatch
//! tests and the CLI's RSS measurement (included with `#[path]`).

use std::path::Path;

/// The probe plugin's folder.
pub fn probe_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/probe")
}

/// The probe plugin renamed to `name` (plugin id `probe/{name}`), packaged. The package bytes depend only on the
/// name, so a copy has the same unique identifier (and reuses its environment) every time it is built.
pub fn renamed_probe(name: &str) -> Vec<u8> {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&probe_dir(), dir.path());
    let manifest = dir.path().join("manifest.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\nname: probe\n"));
    std::fs::write(&manifest, text.replace("\nname: probe\n", &format!("\nname: {name}\n"))).unwrap();
    toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
}
