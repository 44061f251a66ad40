//! What each command does, and how its failures map to exit statuses.

use std::path::Path;
use std::process::ExitCode;

use tracenat::config::{Config, ConfigError};
use tracenat::replay::{self, ReplayArgs, ReplayError};

use super::args::{Cli, Command, ConfigCommand, ReplayCommand};
use super::log;

/// Why a command failed; decides the exit status.
pub enum Failure {
    /// The configuration could not be loaded or is invalid: the operator must edit it.
    Config(ConfigError),
    /// The command was set up correctly but failed while running.
    Replay(ReplayError),
    /// A mapping log could not be read.
    Reader(tracenat::reader::ReaderError),
    /// Output could not be written (e.g. a closed pipe).
    Output(std::io::Error),
    /// An argument that clap accepted but that makes no sense.
    Usage(String),
    /// A command that was set up correctly failed while running (the NAT, the lab, the
    /// generator, the demo).
    Runtime(String),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Config(_) | Failure::Usage(_) => ExitCode::from(2),
            Failure::Replay(_) | Failure::Reader(_) | Failure::Output(_) | Failure::Runtime(_) => {
                ExitCode::from(1)
            }
        }
    }

    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Failure::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Config(error) => error.to_string(),
            Failure::Replay(error) => error.to_string(),
            Failure::Reader(error) => error.to_string(),
            Failure::Output(error) => format!("writing output: {error}"),
            Failure::Usage(message) | Failure::Runtime(message) => message.clone(),
        }
    }
}

/// Runs the command `cli` describes, printing its result to stdout.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let done = |r: Result<(), Failure>| r.map(|_| ExitCode::SUCCESS);
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => done(check_config(&file)),
        Command::Replay(command) => done(replay(command)),
        Command::Log(command) => log::run(command),
        Command::Lab(command) => super::lab::run(command),
        Command::Identity(command) => super::identity::run(command),
        Command::Run(command) => super::run::run(command),
        Command::Demo(command) => super::demo::demo(command),
        Command::Generate(command) => super::generate::run(command),
        Command::Hw(command) => super::demo::hw(command),
        Command::Stats(command) => super::run::stats(command),
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
    let config_text = std::fs::read_to_string(&command.config).ok();
    let args = ReplayArgs {
        config,
        inside: command.inside,
        outside: command.outside,
        out_dir: command.out_dir,
        log_dir: command.log_dir,
        config_text,
    };
    let summary = replay::run(&args).map_err(Failure::Replay)?;
    println!("{summary}");
    Ok(())
}
