//! What the user sees while a plan runs: each operation as the `ip` command it equals, on
//! stderr, so stdout stays data (`--dry-run`, `--json`).

use std::io::Write;

use env_qemu_core::exec::Event;
use env_qemu_core::plan::Plan;

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub quiet: bool,
    pub verbose: bool,
    pub json: bool,
}

impl Out {
    pub fn observer(self) -> impl FnMut(Event<'_>) + Send {
        move |e| {
            if self.quiet {
                return;
            }
            match e {
                Event::Round { round, goal, steps } if round > 1 => line(format_args!(
                    "  re-planned from a fresh dump: {steps} step(s) toward {goal}"
                )),
                Event::Round { .. } => {}
                Event::Applied {
                    round,
                    step,
                    of,
                    op,
                } => {
                    if self.verbose {
                        line(format_args!("  [{round}.{step}/{of}] {op}"));
                    } else {
                        line(format_args!("  {op}"));
                    }
                }
                Event::AlreadyDone { op, error, .. } => line(format_args!(
                    "  {op}: already so (the kernel said: {})",
                    error.kind_words()
                )),
                Event::Failed { op, error, .. } => {
                    line(format_args!("  refused: {op}: {error}"));
                }
                Event::Verified { goal, differences } => {
                    if self.verbose {
                        line(format_args!(
                            "  dump compared with {goal}: {differences} difference(s)"
                        ));
                    }
                }
                // An event a later core adds: shown as it is with --verbose.
                other => {
                    if self.verbose {
                        line(format_args!("  {other:?}"));
                    }
                }
            }
        }
    }

    pub fn say(self, text: impl AsRef<str>) {
        if !self.quiet {
            line(format_args!("{}", text.as_ref()));
        }
    }

    /// `--dry-run`: the plan as commands (or JSON) on stdout.
    pub fn plan(self, plan: &Plan) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(plan).expect("plans serialise")
            );
        } else if plan.is_empty() {
            println!("# nothing to do");
            for n in &plan.notes {
                println!("# {n}");
            }
        } else {
            print!("{plan}");
        }
    }
}

/// One line on stderr that never panics: over SSH the terminal may be gone mid-plan
/// (EPIPE/EIO), and `eprintln!` would then abort the process between two steps. Formatted
/// first and written at once: stderr is unbuffered, and an operation's `ip` line written
/// piece by piece took a dozen write(2)s (each waking the reader of a pipe).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut text = args.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
