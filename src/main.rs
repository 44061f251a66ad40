//! `tracenat` command: parse arguments, run the command, turn failures into exit statuses.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap exits by itself on usage errors (status 2) and for --help/--version (status 0).
    let arguments = cli::Cli::parse();
    match cli::run(arguments) {
        Ok(status) => status,
        // `tracenat log decode | head` closing the pipe early is not a failure.
        Err(failure) if failure.is_broken_pipe() => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message());
            failure.exit_code()
        }
    }
}
