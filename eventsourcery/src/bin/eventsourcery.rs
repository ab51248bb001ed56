//! The standalone ops command line: `eventsourcery <command>`, for what needs no application
//! code (see `eventsourcery::ops` for the commands and their exit codes).

// `eventsourcery::ops` needs a store to operate: say so, in one error, rather than fail on a
// missing module.
#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "the eventsourcery binary needs a store backend: the `sqlite` feature (on by default) or \
     `postgres`, e.g. `cargo install --path eventsourcery --features cli`"
);

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
fn main() {}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod cli {
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

    pub(super) fn main() -> ExitCode {
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
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn main() -> std::process::ExitCode {
    cli::main()
}
