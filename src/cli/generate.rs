//! `tracenat gen` (being written).

use std::process::ExitCode;

use clap::Args;

use super::commands::Failure;

#[derive(Debug, Args)]
pub struct GenCommand {}

pub fn run(_command: GenCommand) -> Result<ExitCode, Failure> {
    Err(Failure::Usage("the generator is being written".into()))
}
