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

/// Puts an executable copy of `src` at `dst`, written by a child process (`cp`).
///
/// A file this process holds open for writing is inherited by any child another thread
/// forks meanwhile, and until that child execs, exec of the file fails with ETXTBSY
/// ("Text file busy"). Tests run on many threads: a file they will execute is never
/// written by the test process itself.
pub fn place_executable(src: &std::path::Path, dst: &std::path::Path) {
    let out = Command::new("cp")
        .arg(src)
        .arg(dst)
        .output()
        .expect("cp runs");
    assert!(
        out.status.success(),
        "cp {} {}: {}",
        src.display(),
        dst.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// An executable script at `dst` holding `text`, written by a child process (see
/// [`place_executable`]): the text goes to a draft beside it first, which is never executed.
pub fn write_executable(dst: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let draft = dst.with_file_name(format!(
        "{}.draft",
        dst.file_name().expect("a file name").to_string_lossy()
    ));
    std::fs::write(&draft, text).expect("write the draft");
    std::fs::set_permissions(&draft, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    place_executable(&draft, dst);
    std::fs::remove_file(&draft).expect("remove the draft");
}
