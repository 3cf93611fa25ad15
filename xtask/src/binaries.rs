//! Building the workspace's helper binaries (the mock cluster, the bench, the `krab` CLI) with
//! cargo and finding their executables in cargo's JSON messages.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs `cargo build <flags> --package <package> --bin <bin>` in the workspace and returns the
/// executable it reports. Cargo's diagnostics go to stderr as they come.
pub(crate) fn build(package: &str, bin: &str, flags: &[&str]) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let what = format!("{cargo} build {} -p {package}", flags.join(" "));
    let out = Command::new(&cargo)
        .arg("build")
        .args(flags)
        .args(["--package", package, "--bin", bin, "--message-format=json"])
        .current_dir(crate::project_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", out.status);
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != bin {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("{what} reported no executable")
}
