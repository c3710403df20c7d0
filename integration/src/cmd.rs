//! Running `ip` and other commands, with failures that show what was run.

use std::process::Command;

/// Runs `program args…`; `Err` carries the command line and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Like [`run`], panicking on failure (test set-up that must work).
pub fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Splits a command line on whitespace (no quoting needed for `ip` arguments).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
