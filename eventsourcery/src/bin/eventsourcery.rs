//! The standalone ops command line: `eventsourcery <command>`, for what needs no application
//! code (see `eventsourcery::ops` for the commands and their exit codes).

use std::process::ExitCode;

use clap::Parser;
use eventsourcery::ops::Ops;

/// Operate eventsourcery's stores: erase and export data subjects, migrate, read, follow and
/// verify the log, list the audit log of decrypted reads.
#[derive(Parser)]
#[command(name = "eventsourcery", version)]
struct Cli {
    #[command(flatten)]
    ops: Ops,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::from(eventsourcery::ops::EXIT_USAGE);
        }
    };
    runtime.block_on(cli.ops.run_standalone())
}
