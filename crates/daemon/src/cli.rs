//! `toolplane plugin …`: scaffolding, packaging, checksums, signatures and inspection of `.difypkg` files, as a clap
//! subcommand enum the CLI embeds.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use toolplane_plugin::{
    DEFAULT_MAX_PACKAGE_SIZE, DecodeLimits, ProgressStage, PublicKeyPem, ScaffoldOptions, Verification,
    checksum_package, decode, generate_signing_key_pair, package_dir, scaffold_tool_plugin, sign, verify,
};

/// Plugin package tools.
#[derive(Debug, Clone, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a working Python tool plugin (manifest, provider, tool, main.py, requirements, _assets).
    Init {
        /// Folder to create (must not exist or be empty).
        dir: PathBuf,
        /// Author: lowercase letters, digits, `_` and `-`.
        #[arg(long)]
        author: String,
        /// Plugin name; the folder name when omitted.
        #[arg(long)]
        name: Option<String>,
        /// One-line description.
        #[arg(long, default_value = "A tool plugin")]
        description: String,
        /// Name of the first tool; the plugin name when omitted.
        #[arg(long)]
        tool: Option<String>,
        /// Source repository URL for the manifest.
        #[arg(long)]
        repo: Option<String>,
    },
    /// Package a plugin folder into a .difypkg (honours .difyignore, else .gitignore).
    Package {
        /// The plugin folder.
        dir: PathBuf,
        /// Output file; `<folder name>.difypkg` when omitted.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Largest total uncompressed size, in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_PACKAGE_SIZE)]
        max_size: u64,
    },
    /// Print a package's checksum (the part after `@` of its unique identifier).
    Checksum {
        /// The .difypkg file.
        package: PathBuf,
    },
    /// Generate keys, sign and verify packages.
    Signature {
        #[command(subcommand)]
        command: SignatureCommand,
    },
    /// Show a package's manifest, tools, checksum, unique identifier and verification.
    Inspect {
        /// The .difypkg file.
        package: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `plugin signature …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SignatureCommand {
    /// Generate an RSA-4096 key pair: `<name>.private.pem` and `<name>.public.pem`.
    Generate {
        /// Base name of the key files.
        #[arg(short = 'f', long = "filename", default_value = "dify_plugin")]
        name: String,
    },
    /// Sign a package into `<package>.signed.difypkg`.
    Sign {
        /// The .difypkg file.
        package: PathBuf,
        /// The private key PEM.
        #[arg(short = 'p', long = "private_key")]
        private_key: PathBuf,
        /// Authorized category written to .verification.dify.json: langgenius, partner or community.
        #[arg(short = 'c', long = "authorized_category")]
        category: Option<String>,
    },
    /// Verify a package's signature (with the official key, or the given public key).
    Verify {
        /// The .difypkg file.
        package: PathBuf,
        /// A public key PEM to verify with instead of the official key.
        #[arg(short = 'p', long = "public_key")]
        public_key: Option<PathBuf>,
    },
}

/// Runs a plugin command, printing results to stdout and progress to stderr.
pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(command))
        .await
        .context("the plugin command panicked")?
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn run_blocking(command: PluginCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        PluginCommand::Init {
            dir,
            author,
            name,
            description,
            tool,
            repo,
        } => {
            let name = match name {
                Some(n) => n,
                None => dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_owned)
                    .context("cannot take the plugin name from the folder; pass --name")?,
            };
            let mut options = ScaffoldOptions::new(author, name, description);
            options.tool_name = tool;
            options.repo = repo;
            let written = scaffold_tool_plugin(&dir, &options)?;
            for path in written {
                writeln!(out, "created {}", path.display())?;
            }
            writeln!(out, "next: toolplane plugin package {}", dir.display())?;
        }
        PluginCommand::Package { dir, output, max_size } => {
            let output = match output {
                Some(o) => o,
                None => {
                    let name = std::fs::canonicalize(&dir)
                        .ok()
                        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_else(|| "plugin".into());
                    PathBuf::from(format!("{name}.difypkg"))
                }
            };
            let mut last_stage = None;
            let mut last_percent = 0;
            let bytes = package_dir(&dir, max_size, |p| {
                if last_stage != Some(p.stage) {
                    last_stage = Some(p.stage);
                    last_percent = 0;
                    let label = match p.stage {
                        ProgressStage::Scanning => "scanning files",
                        ProgressStage::Compressing => "compressing",
                        ProgressStage::Validating => "validating the package",
                        ProgressStage::Done => "done",
                    };
                    eprintln!("{label}…");
                }
                if p.stage == ProgressStage::Compressing && p.bytes_total > 0 {
                    let percent = p.bytes_done.saturating_mul(100) / p.bytes_total;
                    if percent >= last_percent + 25 {
                        last_percent = percent;
                        eprintln!("  {percent}% ({}/{} files)", p.files_done, p.files_total);
                    }
                }
            })?;
            std::fs::write(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
            let package = decode(&bytes, &DecodeLimits::with_max_size(max_size))?;
            writeln!(out, "packaged {} ({} bytes)", output.display(), bytes.len())?;
            writeln!(out, "unique identifier: {}", package.unique_identifier)?;
        }
        PluginCommand::Checksum { package } => {
            let bytes = read(&package)?;
            writeln!(out, "{}", checksum_package(&bytes, &DecodeLimits::default())?)?;
        }
        PluginCommand::Signature { command } => run_signature(command, &mut out)?,
        PluginCommand::Inspect { package, json } => {
            let bytes = read(&package)?;
            let decoded = decode(&bytes, &DecodeLimits::default())?;
            let verification = verify(&bytes, &[PublicKeyPem::official()]).ok();
            let tools: Vec<String> = decoded
                .declarations
                .tool
                .as_ref()
                .map(|t| t.tools.iter().map(|t| t.identity.name.clone()).collect())
                .unwrap_or_default();
            let m = &decoded.manifest;
            if json {
                let value = json!({
                    "unique_identifier": decoded.unique_identifier.as_str(),
                    "checksum": decoded.checksum,
                    "category": m.category().as_str(),
                    "manifest": m.raw,
                    "tool_provider": decoded.declarations.tool.as_ref().map(|t| t.provider.identity.name.clone()),
                    "tools": tools,
                    "signed": decoded.signature.is_some(),
                    "verified_by_official_key": verification.is_some(),
                    "verification": decoded.verification,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else {
                writeln!(out, "unique identifier: {}", decoded.unique_identifier)?;
                writeln!(out, "checksum:          {}", decoded.checksum)?;
                writeln!(out, "name:              {} ({})", m.name, m.label.en_US)?;
                writeln!(out, "author:            {}", m.author)?;
                writeln!(out, "version:           {}", m.version)?;
                writeln!(out, "category:          {}", m.category().as_str())?;
                writeln!(
                    out,
                    "runner:            {} {} ({})",
                    m.meta.runner.language, m.meta.runner.version, m.meta.runner.entrypoint
                )?;
                if let Some(tool) = &decoded.declarations.tool {
                    writeln!(out, "tool provider:     {}", tool.provider.identity.name)?;
                    writeln!(out, "tools:             {}", tools.join(", "))?;
                }
                let signature = match (&decoded.signature, &verification) {
                    (None, _) => "unsigned".to_owned(),
                    (Some(_), Some(v)) => format!(
                        "signed, verified with the official key ({})",
                        v.effective_verification().authorized_category.as_str()
                    ),
                    (Some(_), None) => "signed, not verified by the official key".to_owned(),
                };
                writeln!(out, "signature:         {signature}")?;
            }
        }
    }
    Ok(())
}

fn run_signature(command: SignatureCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        SignatureCommand::Generate { name } => {
            let pair = generate_signing_key_pair()?;
            let private = PathBuf::from(format!("{name}.private.pem"));
            let public = PathBuf::from(format!("{name}.public.pem"));
            for path in [&private, &public] {
                if path.exists() {
                    bail!("{} already exists; choose another name with -f", path.display());
                }
            }
            std::fs::write(&private, &pair.private_pem).with_context(|| format!("writing {}", private.display()))?;
            std::fs::write(&public, &pair.public_pem).with_context(|| format!("writing {}", public.display()))?;
            writeln!(out, "wrote {} and {}", private.display(), public.display())?;
        }
        SignatureCommand::Sign {
            package,
            private_key,
            category,
        } => {
            let bytes = read(&package)?;
            let key = String::from_utf8(read(&private_key)?).context("the private key is not UTF-8 PEM text")?;
            let verification = category
                .map(|c| {
                    c.parse()
                        .map(|authorized_category| Verification { authorized_category })
                        .map_err(anyhow::Error::msg)
                })
                .transpose()?;
            let signed = sign(&bytes, &key, verification)?;
            let stem = package
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.strip_suffix(".difypkg").unwrap_or(n).to_owned())
                .unwrap_or_else(|| "plugin".into());
            let output = package.with_file_name(format!("{stem}.signed.difypkg"));
            std::fs::write(&output, &signed).with_context(|| format!("writing {}", output.display()))?;
            writeln!(out, "signed package written to {}", output.display())?;
        }
        SignatureCommand::Verify { package, public_key } => {
            let bytes = read(&package)?;
            let key = match public_key {
                Some(path) => PublicKeyPem::from_file(&path)?,
                None => PublicKeyPem::official(),
            };
            let result = verify(&bytes, &[key])?;
            writeln!(
                out,
                "signature verified with {} (signed at {}, category {})",
                result.key,
                result.time,
                result.effective_verification().authorized_category.as_str()
            )?;
        }
    }
    Ok(())
}
