//! End-to-end tests of the package format: build from folders, decode, checksum against Python, sign and verify,
//! and rejection of hostile archives.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use toolplane_core::{ProviderConfigType, ToolParameterType};
use toolplane_plugin::*;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const MAX: u64 = DEFAULT_MAX_PACKAGE_SIZE;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello_plugin")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn hello_package() -> &'static [u8] {
    static PKG: OnceLock<Vec<u8>> = OnceLock::new();
    PKG.get_or_init(|| package_dir(&data_dir(), MAX, |_| {}).unwrap())
}

/// One 4096-bit key pair per test binary: generation is slow in debug builds.
fn key_pair() -> &'static SigningKeyPair {
    static KEYS: OnceLock<SigningKeyPair> = OnceLock::new();
    KEYS.get_or_init(|| generate_signing_key_pair().unwrap())
}

fn test_key() -> PublicKeyPem {
    PublicKeyPem::new("test", key_pair().public_pem.clone())
}

fn zip_of(entries: &[(&str, &[u8])], comment: Option<&str>) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, content) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(content).unwrap();
    }
    if let Some(c) = comment {
        w.set_comment(c).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The files of a package, in archive order, as (path, content).
fn entries_of(pkg: &[u8]) -> Vec<(String, Vec<u8>)> {
    let decoded = decode(pkg, &DecodeLimits::default()).unwrap();
    decoded
        .files()
        .iter()
        .map(|f| (f.path.clone(), f.content.clone()))
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)], comment: &str) -> Vec<u8> {
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(p, c)| (p.as_str(), c.as_slice())).collect();
    zip_of(&borrowed, Some(comment))
}

/// Runs the Python oracle; `None` (with a notice) when python3 is not installed.
fn python_oracle(pkg: &[u8], public_key: Option<&str>) -> Option<Vec<(String, String)>> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("NOTICE: python3 not found; skipping the independent Python check");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let pkg_path = dir.path().join("p.difypkg");
    std::fs::write(&pkg_path, pkg).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/checksum_oracle.py"))
        .arg(&pkg_path);
    if let Some(pem) = public_key {
        let key_path = dir.path().join("k.pem");
        std::fs::write(&key_path, pem).unwrap();
        cmd.arg(key_path);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    )
}

fn oracle_value(lines: &[(String, String)], key: &str) -> String {
    lines.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap()
}

#[test]
fn packaged_folder_decodes_with_typed_declarations() {
    let pkg = decode(hello_package(), &DecodeLimits::default()).unwrap();
    assert_eq!(pkg.manifest.name, "hello_plugin");
    assert_eq!(pkg.manifest.category(), PluginCategory::Tool);
    assert_eq!(pkg.plugin_id(), "toolplane_tests/hello_plugin");
    assert_eq!(pkg.unique_identifier.checksum(), pkg.checksum);
    assert_eq!(
        pkg.unique_identifier.as_str(),
        format!("toolplane_tests/hello_plugin:0.1.0@{}", pkg.checksum)
    );

    // Files are sorted by path, as the original packager writes them.
    let paths: Vec<&str> = pkg.files().iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.contains(&".difyignore"));

    let tool = pkg.declarations.tool.as_ref().unwrap();
    assert_eq!(tool.provider.identity.name, "hello");
    assert_eq!(tool.provider.plugin_id.as_deref(), Some("toolplane_tests/hello_plugin"));
    // Description filled from the manifest; the unknown `agent` tag dropped from the typed identity only.
    assert_eq!(tool.provider.identity.description.en_US, pkg.manifest.description.en_US);
    assert_eq!(tool.provider.identity.tags.len(), 1);
    assert_eq!(tool.raw["identity"]["tags"].as_array().unwrap().len(), 2);
    // credentials_for_provider (a mapping) became a named list.
    let names: Vec<&str> = tool
        .provider
        .credentials_schema
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["greeting_prefix", "api_key"]);
    assert_eq!(
        tool.provider.credentials_schema[1].kind,
        ProviderConfigType::SecretInput
    );
    assert_eq!(tool.tool_files, ["tools/greet.yaml", "tools/shout.yaml"]);
    assert_eq!(tool.tools.len(), 2);
    assert_eq!(tool.tools[0].identity.provider, "hello");
    assert_eq!(tool.tools[0].parameters[1].kind, ToolParameterType::Select);
    assert_eq!(tool.tools[0].parameters[1].option_values(), ["friendly", "formal"]);
    assert_eq!(tool.tools[1].output_schema["type"], "object");

    assert_eq!(pkg.asset_names(), ["icon.svg"]);
    assert!(pkg.asset("icon.svg").unwrap().starts_with(b"<svg"));
    let readmes = pkg.readmes();
    assert_eq!(readmes.keys().collect::<Vec<_>>(), ["en_US", "zh_Hans"]);
    assert!(readmes["zh_Hans"].contains("你好插件"));
    assert!(pkg.signature.is_none() && pkg.verification.is_none());
    pkg.check_assets().unwrap();
}

#[test]
fn ignore_rules_progress_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data_dir(), dir.path());
    std::fs::write(dir.path().join("debug.log"), "noise").unwrap();
    std::fs::write(dir.path().join("keep.log"), "kept by a negation").unwrap();
    std::fs::create_dir(dir.path().join("scratch")).unwrap();
    std::fs::write(dir.path().join("scratch/notes.txt"), "ignored dir").unwrap();

    let mut stages = Vec::new();
    let bytes = package_dir(dir.path(), MAX, |p| stages.push(p.stage)).unwrap();
    assert_eq!(stages.first(), Some(&ProgressStage::Scanning));
    assert!(stages.contains(&ProgressStage::Compressing));
    assert_eq!(stages.last(), Some(&ProgressStage::Done));
    let pkg = decode(&bytes, &DecodeLimits::default()).unwrap();
    let paths: Vec<&str> = pkg.files().iter().map(|f| f.path.as_str()).collect();
    assert!(!paths.contains(&"debug.log"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("scratch/")), "{paths:?}");
    assert!(paths.contains(&"keep.log"), "{paths:?}");

    // Without .difyignore, .gitignore applies.
    std::fs::remove_file(dir.path().join(".difyignore")).unwrap();
    std::fs::write(dir.path().join(".gitignore"), "keep.log\n").unwrap();
    let bytes = package_dir(dir.path(), MAX, |_| {}).unwrap();
    let pkg = decode(&bytes, &DecodeLimits::default()).unwrap();
    let paths: Vec<&str> = pkg.files().iter().map(|f| f.path.as_str()).collect();
    assert!(
        !paths.contains(&"keep.log") && paths.contains(&"debug.log"),
        "{paths:?}"
    );

    let err = package_dir(dir.path(), 1000, |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("less than 1000 bytes") && msg.contains("1. name: "),
        "{msg}"
    );
}

#[test]
fn missing_icon_fails_packaging() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data_dir(), dir.path());
    std::fs::remove_file(dir.path().join("_assets/icon.svg")).unwrap();
    let err = package_dir(dir.path(), MAX, |_| {}).unwrap_err();
    assert!(matches!(err, PackageError::AssetMissing { .. }), "{err}");
    assert!(err.to_string().contains("icon.svg"), "{err}");
}

#[test]
fn checksum_matches_python() {
    let ours = checksum_package(hello_package(), &DecodeLimits::default()).unwrap();
    if let Some(lines) = python_oracle(hello_package(), None) {
        assert_eq!(oracle_value(&lines, "checksum"), ours);
    }
    // A hand-made zip with nested paths and non-ASCII names too.
    let zip = zip_of(&[("b/ü.txt", b"x"), ("a.txt", b""), ("B.txt", b"y")], None);
    let ours = checksum_package(&zip, &DecodeLimits::default()).unwrap();
    if let Some(lines) = python_oracle(&zip, None) {
        assert_eq!(oracle_value(&lines, "checksum"), ours);
    }
}

#[test]
fn sign_and_verify_round_trip_and_python_agrees() {
    let keys = key_pair();
    assert!(keys.private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    assert!(keys.public_pem.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"));

    let unsigned = hello_package();
    let verification = Verification {
        authorized_category: AuthorizedCategory::Partner,
    };
    let signed = sign_at(unsigned, &keys.private_pem, Some(verification), 1_700_000_000).unwrap();
    let result = verify(&signed, &[PublicKeyPem::official(), test_key()]).unwrap();
    assert_eq!(result.key, "test");
    assert_eq!(result.time, 1_700_000_000);
    assert_eq!(result.verification, Some(verification));

    let pkg = decode(&signed, &DecodeLimits::default()).unwrap();
    // The verification file is the last entry and changes the checksum; the comment has the original format.
    assert_eq!(pkg.files().last().unwrap().path, VERIFICATION_FILE);
    assert_eq!(
        pkg.file(VERIFICATION_FILE).unwrap(),
        br#"{"authorized_category":"partner"}"#
    );
    assert_ne!(
        pkg.checksum,
        decode(unsigned, &DecodeLimits::default()).unwrap().checksum
    );
    let comment = std::str::from_utf8(pkg.comment()).unwrap();
    assert!(
        comment.starts_with(r#"{"signature":""#) && comment.ends_with(r#"","time":1700000000}"#),
        "{comment}"
    );
    assert_eq!(pkg.signature.as_ref().unwrap().time, 1_700_000_000);

    if let Some(lines) = python_oracle(&signed, Some(&keys.public_pem)) {
        assert_eq!(oracle_value(&lines, "signature"), "valid");
        assert_eq!(oracle_value(&lines, "checksum"), pkg.checksum);
    }

    // Signing without a verification keeps the file set, so the checksum is unchanged.
    let plain = sign(unsigned, &keys.private_pem, None).unwrap();
    let result = verify(&plain, &[test_key()]).unwrap();
    assert_eq!(result.verification, None);
    assert_eq!(
        result.effective_verification().authorized_category,
        AuthorizedCategory::Langgenius
    );
    assert_eq!(
        checksum_package(&plain, &DecodeLimits::default()).unwrap(),
        checksum_package(unsigned, &DecodeLimits::default()).unwrap()
    );
}

#[test]
fn tampering_is_detected() {
    let keys = key_pair();
    let signed = sign_at(hello_package(), &keys.private_pem, None, 1_700_000_000).unwrap();
    let comment = String::from_utf8(decode(&signed, &DecodeLimits::default()).unwrap().comment().to_vec()).unwrap();
    let entries = entries_of(&signed);

    // A modified file.
    let mut modified = entries.clone();
    let main = modified.iter_mut().find(|(p, _)| p == "main.py").unwrap();
    main.1.extend_from_slice(b"\nimport os\n");
    let err = verify(&rezip(&modified, &comment), &[test_key()]).unwrap_err();
    assert!(matches!(err, SignatureError::Mismatch { tried: 1 }), "{err}");

    // An added file.
    let mut added = entries.clone();
    added.push(("evil.py".into(), b"print(1)".to_vec()));
    assert!(matches!(
        verify(&rezip(&added, &comment), &[test_key()]),
        Err(SignatureError::Mismatch { .. })
    ));

    // Reordered files: the signature covers archive order.
    let mut reordered = entries.clone();
    reordered.swap(0, 1);
    assert!(verify(&rezip(&reordered, &comment), &[test_key()]).is_err());

    // A modified comment time, and a garbage comment.
    let moved = comment.replace("1700000000", "1700000001");
    assert!(matches!(
        verify(&rezip(&entries, &moved), &[test_key()]),
        Err(SignatureError::Mismatch { .. })
    ));
    assert!(matches!(
        verify(&rezip(&entries, "not json"), &[test_key()]),
        Err(SignatureError::Unsigned)
    ));

    // The wrong key.
    let err = verify(&signed, &[PublicKeyPem::official()]).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    // Unchanged: still fine.
    verify(&rezip(&entries, &comment), &[test_key()]).unwrap();
}

#[test]
fn verifier_policy() {
    let keys = key_pair();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("third_party.public.pem");
    std::fs::write(&key_path, &keys.public_pem).unwrap();

    let unsigned = decode(hello_package(), &DecodeLimits::default()).unwrap();
    let signed_bytes = sign(
        hello_package(),
        &keys.private_pem,
        Some(Verification {
            authorized_category: AuthorizedCategory::Community,
        }),
    )
    .unwrap();
    let signed = decode(&signed_bytes, &DecodeLimits::default()).unwrap();

    // Defaults: official key only, verification forced.
    let config = VerifierConfig::from_lookup(|_| None).unwrap();
    let err = config.check(&unsigned, false).unwrap_err();
    assert!(err.to_string().contains("bad signature"), "{err}");
    assert!(matches!(
        config.check(&signed, false),
        Err(SignatureError::BadSignature)
    ));

    // Not forced: accepted but unverified, unless the upload asks for verification.
    let lax = VerifierConfig::from_lookup(|k| (k == "FORCE_VERIFYING_SIGNATURE").then(|| "false".into())).unwrap();
    let check = lax.check(&unsigned, false).unwrap();
    assert!(!check.verified && check.verification.is_none() && check.failure.is_some());
    assert!(lax.check(&unsigned, true).is_err());

    // Third-party key trusted.
    let path = key_path.display().to_string();
    let third = VerifierConfig::from_lookup(|k| match k {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED" => Some("true".into()),
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS" => Some(format!(" {path} ")),
        _ => None,
    })
    .unwrap();
    let check = third.check(&signed, false).unwrap();
    assert!(check.verified);
    assert_eq!(
        check.verification.unwrap().authorized_category,
        AuthorizedCategory::Community
    );

    // A package claiming to be langgenius must be signed as langgenius, even as a single upload.
    let dir2 = tempfile::tempdir().unwrap();
    copy_dir(&data_dir(), dir2.path());
    let manifest = std::fs::read_to_string(dir2.path().join("manifest.yaml")).unwrap();
    std::fs::write(
        dir2.path().join("manifest.yaml"),
        manifest.replace("author: toolplane_tests", "author: langgenius"),
    )
    .unwrap();
    let claimed = sign(
        &package_dir(dir2.path(), MAX, |_| {}).unwrap(),
        &keys.private_pem,
        Some(Verification {
            authorized_category: AuthorizedCategory::Community,
        }),
    )
    .unwrap();
    let claimed = decode(&claimed, &DecodeLimits::default()).unwrap();
    assert!(matches!(
        third.check(&claimed, false),
        Err(SignatureError::NotLanggenius)
    ));
    let permissive = VerifierConfig {
        enforce_langgenius_signatures: false,
        ..third.clone()
    };
    assert!(permissive.check(&claimed, false).unwrap().verified);

    // A missing third-party key file is reported, not silently ignored.
    let broken = VerifierConfig {
        third_party_public_keys: vec![dir.path().join("missing.pem")],
        ..third
    };
    assert!(
        broken
            .check(&signed, false)
            .unwrap_err()
            .to_string()
            .contains("missing.pem")
    );
}

#[test]
fn scaffold_packages_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("weather_helper");
    let mut options = ScaffoldOptions::new("acme", "weather_helper", "Looks up \"weather\": with quotes & colons");
    options.tool_name = Some("current_weather".into());
    let written = scaffold_tool_plugin(&root, &options).unwrap();
    for expected in [
        "manifest.yaml",
        "main.py",
        "requirements.txt",
        "provider/weather_helper.yaml",
        "provider/weather_helper.py",
        "tools/current_weather.yaml",
        "tools/current_weather.py",
        "_assets/icon.svg",
        "README.md",
        ".difyignore",
    ] {
        assert!(
            written.contains(&PathBuf::from(expected)),
            "{expected} missing from {written:?}"
        );
    }
    std::fs::create_dir(root.join("__pycache__")).unwrap();
    std::fs::write(root.join("__pycache__/main.cpython-312.pyc"), "bytecode").unwrap();

    let bytes = package_dir(&root, MAX, |_| {}).unwrap();
    let pkg = decode(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(pkg.plugin_id(), "acme/weather_helper");
    assert_eq!(
        pkg.manifest.description.en_US,
        "Looks up \"weather\": with quotes & colons"
    );
    let tool = pkg.declarations.tool.as_ref().unwrap();
    assert_eq!(tool.tools[0].identity.name, "current_weather");
    assert_eq!(tool.tools[0].identity.provider, "weather_helper");
    assert!(
        pkg.files()
            .iter()
            .all(|f| !f.path.contains("__pycache__") && f.path != ".gitignore")
    );
    assert_eq!(pkg.asset_names(), ["icon-dark.svg", "icon.svg"]);
    let tool_py = std::str::from_utf8(pkg.file("tools/current_weather.py").unwrap()).unwrap();
    assert!(tool_py.contains("class CurrentWeatherTool(Tool)"));
}

#[test]
fn hostile_archives_are_rejected_with_the_entry_named() {
    let limits = DecodeLimits::default();

    let err = decode(&zip_of(&[("../evil.py", b"x")], None), &limits).unwrap_err();
    assert!(
        matches!(&err, PackageError::UnsafePath { entry, .. } if entry == "../evil.py"),
        "{err}"
    );
    assert!(err.to_string().contains("traversal"), "{err}");

    let err = decode(&zip_of(&[("/etc/passwd", b"x")], None), &limits).unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");

    // A symlink entry.
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
        .unwrap();
    let err = decode(&w.finish().unwrap().into_inner(), &limits).unwrap_err();
    assert!(matches!(&err, PackageError::Symlink(name) if name == "link"), "{err}");

    // Duplicate names: write a.txt and b.txt, then rename b.txt in place (same length).
    let mut bytes = zip_of(&[("a.txt", b"1"), ("b.txt", b"2")], None);
    let positions: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(_, w)| *w == b"b.txt")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len(), 2);
    for p in positions {
        bytes[p] = b'a';
    }
    let err = decode(&bytes, &limits).unwrap_err();
    assert!(err.to_string().contains("a.txt"), "{err}");

    // Oversize input.
    let err = decode(hello_package(), &DecodeLimits::with_max_size(100)).unwrap_err();
    assert!(matches!(err, PackageError::PackageTooLarge { limit: 100, .. }), "{err}");
    assert!(err.to_string().contains("MAX_PLUGIN_PACKAGE_SIZE"), "{err}");

    // Too many entries.
    let many = zip_of(&[("a", b""), ("b", b""), ("c", b""), ("d", b"")], None);
    let err = decode(
        &many,
        &DecodeLimits {
            max_entries: 3,
            ..limits
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, PackageError::TooManyEntries { count: 4, limit: 3 }),
        "{err}"
    );

    // Not a zip at all.
    assert!(matches!(decode(b"hello", &limits), Err(PackageError::NotAZip(_))));
}

#[test]
fn zip_bombs_stop_at_the_limit() {
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let bomb = zip_of(&[("manifest.yaml", b"x"), ("bomb.bin", &zeros)], None);
    assert!(bomb.len() < 64 * 1024, "the bomb compresses well: {}", bomb.len());

    // Total uncompressed size over the limit.
    let small = DecodeLimits {
        max_uncompressed_size: 1024 * 1024,
        ..DecodeLimits::default()
    };
    let err = decode(&bomb, &small).unwrap_err();
    assert!(
        matches!(&err, PackageError::UncompressedTooLarge { entry, .. } if entry == "bomb.bin"),
        "{err}"
    );

    // Ratio over the limit, although the size is allowed.
    let err = decode(&bomb, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(&err, PackageError::SuspiciousCompression { entry, .. } if entry == "bomb.bin"),
        "{err}"
    );
    assert!(err.to_string().contains("zip bomb"), "{err}");
}

#[test]
fn manifest_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data_dir(), dir.path());
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml")).unwrap();
    std::fs::write(
        dir.path().join("manifest.yaml"),
        manifest
            .replace("language: python", "language: ruby")
            .replace("version: 0.1.0", "version: v1"),
    )
    .unwrap();
    let err = package_dir(dir.path(), MAX, |_| {}).unwrap_err();
    let PackageError::Manifest(errors) = &err else {
        panic!("expected manifest errors, got {err}");
    };
    assert!(
        errors.has_field("meta.runner.language") && errors.has_field("version"),
        "{err}"
    );
    assert!(err.to_string().contains("expected \"python\""), "{err}");

    // A missing tool file is named with the provider that references it.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&data_dir(), dir.path());
    std::fs::remove_file(dir.path().join("tools/shout.yaml")).unwrap();
    let err = package_dir(dir.path(), MAX, |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("tools/shout.yaml") && err.to_string().contains("provider/hello.yaml"),
        "{err}"
    );
}

#[test]
fn directory_entries_are_skipped() {
    let entries = entries_of(hello_package());
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.add_directory("tools/", SimpleFileOptions::default()).unwrap();
    for (path, content) in &entries {
        w.start_file(path.as_str(), SimpleFileOptions::default()).unwrap();
        w.write_all(content).unwrap();
    }
    let with_dirs = w.finish().unwrap().into_inner();
    assert_eq!(
        checksum_package(&with_dirs, &DecodeLimits::default()).unwrap(),
        checksum_package(hello_package(), &DecodeLimits::default()).unwrap()
    );
}
