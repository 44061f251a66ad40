//! Command-line interface: argument definitions and what each command does.

mod args;
mod commands;
mod demo;
mod export;
mod generate;
mod identity;
mod lab;
mod log;
mod run;
mod signals;

pub use args::Cli;
pub use commands::run;
