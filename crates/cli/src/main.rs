//! `medallion`: the command line of the medallion lakehouse engine.

mod cli;
mod commands;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.global.log_format, cli.global.verbose, cli.global.quiet);
    let code = commands::run(cli);
    ExitCode::from(code)
}
