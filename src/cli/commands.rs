//! What each command does, and how its failures map to exit statuses.

use std::path::Path;
use std::process::ExitCode;

use tracenat::config::{Config, ConfigError};
use tracenat::replay::{self, ReplayArgs, ReplayError};

use super::args::{Cli, Command, ConfigCommand, ReplayCommand};

/// Why a command failed; decides the exit status.
pub enum Failure {
    /// The configuration could not be loaded or is invalid: the operator must edit it.
    Config(ConfigError),
    /// The command was set up correctly but failed while running.
    Replay(ReplayError),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Config(_) => ExitCode::from(2),
            Failure::Replay(_) => ExitCode::from(1),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Config(error) => error.to_string(),
            Failure::Replay(error) => error.to_string(),
        }
    }
}

/// Runs the command `cli` describes, printing its result to stdout.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Replay(command) => replay(command),
    }
}

fn check_config(file: &Path) -> Result<(), Failure> {
    let config = Config::load(file).map_err(Failure::Config)?;
    println!("{}: ok", file.display());
    println!("{}", config.summary());
    Ok(())
}

fn replay(command: ReplayCommand) -> Result<(), Failure> {
    let config = Config::load(&command.config).map_err(Failure::Config)?;
    let args = ReplayArgs {
        config,
        inside: command.inside,
        outside: command.outside,
        out_dir: command.out_dir,
    };
    let summary = replay::run(&args).map_err(Failure::Replay)?;
    println!("{summary}");
    Ok(())
}
