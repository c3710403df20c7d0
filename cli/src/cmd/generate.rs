//! `env-qemu generate bash|zsh|fish|elvish|powershell|man`: completions and the man page,
//! both from the clap definition.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, GenerateArgs};
use crate::exit::Failure;

pub fn run(a: &GenerateArgs) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    let mut stdout = std::io::stdout();
    if a.what == "man" {
        return clap_mangen::Man::new(cmd).render(&mut stdout).map_err(|e| {
            Failure::new(
                crate::exit::Code::Kernel,
                format!("writing the man page: {e}"),
            )
        });
    }
    let shell: Shell = a.what.parse().map_err(|_| {
        Failure::usage(format!(
            "{:?}: expected bash, zsh, fish, elvish, powershell or man",
            a.what
        ))
    })?;
    clap_complete::generate(shell, &mut cmd, "env-qemu", &mut stdout);
    Ok(())
}
