//! Corpus check: imports every spec under a folder and reports specs imported, operations → tools and failures
//! by category. Exits non-zero below the gates.
//!
//! ```text
//! cargo run --release -p toolplane-openapi --example corpus -- <folder> [--min-specs 99] [--min-ops 95]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use toolplane_openapi::{LoadOptions, ParseOptions, load_spec_with, parse_tools};

const METHODS: [&str; 8] = ["get", "post", "put", "delete", "patch", "head", "options", "trace"];

fn main() {
    let mut args = std::env::args().skip(1);
    let mut folder = None;
    let (mut min_specs, mut min_ops) = (99.0_f64, 95.0_f64);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--min-specs" => min_specs = args.next().and_then(|v| v.parse().ok()).unwrap_or(min_specs),
            "--min-ops" => min_ops = args.next().and_then(|v| v.parse().ok()).unwrap_or(min_ops),
            other => folder = Some(PathBuf::from(other)),
        }
    }
    let Some(folder) = folder else {
        eprintln!("usage: corpus <folder> [--min-specs 99] [--min-ops 95]");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    walk(&folder, &mut files);
    files.sort();

    let load_options = LoadOptions::default();
    let parse_options = ParseOptions {
        max_operations: usize::MAX,
        ..ParseOptions::default()
    };
    let (mut imported, mut operations, mut tools) = (0usize, 0usize, 0usize);
    let mut failures: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest: Vec<(Duration, String)> = Vec::new();
    let started = Instant::now();
    for file in &files {
        let text = match std::fs::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                failures
                    .entry("io")
                    .or_default()
                    .push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        operations += count_operations(&text);
        let t0 = Instant::now();
        let result = load_spec_with(&text, &load_options)
            .and_then(|loaded| loaded.into_spec())
            .and_then(|spec| parse_tools(&spec, &parse_options));
        let took = t0.elapsed();
        slowest.push((took, file.display().to_string()));
        match result {
            Ok(parsed) => {
                imported += 1;
                tools += parsed.tools.len();
                for w in &parsed.warnings {
                    *warnings.entry(w.code.clone()).or_default() += 1;
                }
            }
            Err(e) => failures
                .entry(e.category())
                .or_default()
                .push(format!("{}: {e}", file.display())),
        }
    }
    let total = started.elapsed();
    slowest.sort_by_key(|entry| std::cmp::Reverse(entry.0));

    let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    let spec_pct = pct(imported, files.len());
    let op_pct = pct(tools, operations);
    println!("specs imported:      {imported} / {} ({spec_pct:.2} %)", files.len());
    println!("operations -> tools: {tools} / {operations} ({op_pct:.2} %)");
    println!("parse time:          {:.2} s in total", total.as_secs_f64());
    for (took, file) in slowest.iter().take(5) {
        println!("  slowest: {:>8.1} ms  {file}", took.as_secs_f64() * 1000.0);
    }
    println!("failures by category:");
    for (category, list) in &failures {
        println!("  {category}: {}", list.len());
        for line in list.iter().take(3) {
            println!("    {}", line.chars().take(240).collect::<String>());
        }
    }
    println!("warnings by code:");
    for (code, n) in &warnings {
        println!("  {code}: {n}");
    }
    if spec_pct < min_specs || op_pct < min_ops {
        eprintln!(
            "FAILED the gate: specs {spec_pct:.2} % (need {min_specs} %), operations {op_pct:.2} % (need {min_ops} %)"
        );
        std::process::exit(1);
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"))
        {
            out.push(path);
        }
    }
}

/// Operations as the raw document declares them (JSON files only; YAML files count after loading).
fn count_operations(text: &str) -> usize {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => match load_spec_with(text, &LoadOptions::default()).and_then(|l| l.into_spec()) {
            Ok(spec) => spec.document,
            Err(_) => return 0,
        },
    };
    value
        .get("paths")
        .and_then(Value::as_object)
        .map(|paths| {
            paths
                .values()
                .filter_map(Value::as_object)
                .map(|item| {
                    METHODS
                        .iter()
                        .filter(|m| item.get(**m).is_some_and(Value::is_object))
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}
