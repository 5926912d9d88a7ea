//! `toolplane oauth set-system-client` / `delete-system-client` on a real data folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn toolplane(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_toolplane"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOOLPLANE_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn set_and_delete_system_clients() {
    let dir = tempfile::tempdir().unwrap();
    assert!(toolplane(dir.path(), &["migrate"]).status.success());
    let out = toolplane(
        dir.path(),
        &[
            "oauth",
            "set-system-client",
            "github",
            "-p",
            "client_id=abc",
            "-p",
            "client_secret=s3cr=t",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("system OAuth client of github saved (2 params: client_id, client_secret)"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr=t"), "secrets are not echoed");

    let out = toolplane(dir.path(), &["oauth", "set-system-client", "github", "-p", "novalue"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not KEY=VALUE"));

    assert!(
        toolplane(dir.path(), &["oauth", "delete-system-client", "github"])
            .status
            .success()
    );
    let out = toolplane(dir.path(), &["oauth", "delete-system-client", "github"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no system OAuth client"));
}
