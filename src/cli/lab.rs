//! `tracenat lab …` (being written).

use std::process::ExitCode;

use clap::Subcommand;

use super::commands::Failure;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab.
    Up,
}

pub fn run(_command: LabCommand) -> Result<ExitCode, Failure> {
    Err(Failure::Usage("the lab is being written".into()))
}
