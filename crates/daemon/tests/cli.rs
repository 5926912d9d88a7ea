//! `toolplane plugin …` end to end on real files: init, package, checksum, inspect, signature generate/sign/verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use toolplane_daemon::cli::{PluginCommand, SignatureCommand, run};
use toolplane_plugin::{DecodeLimits, PublicKeyPem, checksum_package, decode, verify};

#[tokio::test]
async fn init_package_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("weather");
    run(PluginCommand::Init {
        dir: plugin.clone(),
        author: "acme".into(),
        name: None,
        description: "Weather lookups".into(),
        tool: Some("forecast".into()),
        repo: None,
    })
    .await
    .unwrap();
    assert!(plugin.join("manifest.yaml").is_file());

    let output = dir.path().join("weather.difypkg");
    run(PluginCommand::Package {
        dir: plugin.clone(),
        output: Some(output.clone()),
        max_size: 50 * 1024 * 1024,
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&output).unwrap();
    let package = decode(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(package.plugin_id(), "acme/weather");
    assert_eq!(
        package.declarations.tool.as_ref().unwrap().tools[0].identity.name,
        "forecast"
    );
    assert_eq!(
        checksum_package(&bytes, &DecodeLimits::default()).unwrap(),
        package.checksum
    );

    // A size limit below the package's size is an error that names the limit.
    let err = run(PluginCommand::Package {
        dir: plugin.clone(),
        output: Some(dir.path().join("tiny.difypkg")),
        max_size: 100,
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("100"), "{err:#}");

    run(PluginCommand::Checksum {
        package: output.clone(),
    })
    .await
    .unwrap();
    run(PluginCommand::Inspect {
        package: output.clone(),
        json: true,
    })
    .await
    .unwrap();
    run(PluginCommand::Inspect {
        package: output.clone(),
        json: false,
    })
    .await
    .unwrap();

    let keys = dir.path().join("mykey");
    let keys_name = keys.to_str().unwrap().to_owned();
    run(PluginCommand::Signature {
        command: SignatureCommand::Generate {
            name: keys_name.clone(),
        },
    })
    .await
    .unwrap();
    let private = dir.path().join("mykey.private.pem");
    let public = dir.path().join("mykey.public.pem");
    assert!(private.is_file() && public.is_file());
    // Refuses to overwrite keys.
    assert!(
        run(PluginCommand::Signature {
            command: SignatureCommand::Generate { name: keys_name },
        })
        .await
        .is_err()
    );

    run(PluginCommand::Signature {
        command: SignatureCommand::Sign {
            package: output.clone(),
            private_key: private.clone(),
            category: Some("partner".into()),
        },
    })
    .await
    .unwrap();
    let signed = dir.path().join("weather.signed.difypkg");
    let signed_bytes = std::fs::read(&signed).unwrap();
    let result = verify(&signed_bytes, &[PublicKeyPem::from_file(&public).unwrap()]).unwrap();
    assert_eq!(result.effective_verification().authorized_category.as_str(), "partner");

    run(PluginCommand::Signature {
        command: SignatureCommand::Verify {
            package: signed.clone(),
            public_key: Some(public.clone()),
        },
    })
    .await
    .unwrap();
    // The official key did not sign it; the unsigned package does not verify at all.
    assert!(
        run(PluginCommand::Signature {
            command: SignatureCommand::Verify {
                package: signed,
                public_key: None
            },
        })
        .await
        .is_err()
    );
    assert!(
        run(PluginCommand::Signature {
            command: SignatureCommand::Verify {
                package: output,
                public_key: Some(public)
            },
        })
        .await
        .is_err()
    );
    assert!(
        run(PluginCommand::Signature {
            command: SignatureCommand::Sign {
                package: dir.path().join("weather.difypkg"),
                private_key: private,
                category: Some("nobody".into()),
            },
        })
        .await
        .is_err()
    );
}
