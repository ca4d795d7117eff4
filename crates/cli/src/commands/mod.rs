//! One module per command; each returns the process exit code.

mod generate;
mod history;
mod lineage;
mod plan;
mod query;
mod run;
mod validate;

use medallion_core::{Error, Pipeline};

use crate::cli::{Cli, Command, Global};

/// Dispatches a parsed command line and returns the exit code: 0 ok, 1 failure,
/// 2 bad configuration or usage, 3 data-quality failure ([`Error::exit_code`]).
pub fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Validate { format } => validate::run(&cli.global, format),
        Command::Plan {
            select,
            shard,
            format,
        } => plan::run(&cli.global, &select, shard, format),
        Command::Run {
            select,
            format,
            full_refresh,
            forward_only,
            from,
            to,
            shard,
            metrics_push,
        } => run::run(
            &cli.global,
            &select,
            run::RunOptions {
                shard,
                format,
                silver: medallion_silver::SilverOptions {
                    full_refresh,
                    forward_only,
                },
                gold: medallion_gold::GoldOptions {
                    full_refresh,
                    forward_only,
                    range: from.zip(to),
                },
                metrics_push,
            },
        ),
        Command::Generate {
            events,
            seed,
            out,
            events_per_file,
        } => generate::run(events, seed, &out, events_per_file),
        Command::Query {
            sql,
            format,
            versions,
        } => query::run(&cli.global, &sql, format, &versions),
        Command::History {
            table,
            limit,
            format,
            rebuild,
        } => if rebuild {
            history::rebuild(&cli.global, format)
        } else {
            Ok(())
        }
        .and_then(|()| history::run(&cli.global, table.as_deref(), limit, format)),
        Command::Lineage {
            command: Some(command),
            ..
        } => lineage::trace(&cli.global, command),
        Command::Lineage {
            command: None,
            table,
            version,
            format,
        } => lineage::run(
            &cli.global,
            table.as_deref().unwrap_or_default(),
            version,
            format,
        ),
        Command::Schema => {
            print!("{}", medallion_config::json_schema());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

/// Prints an error for a person and returns its exit code.
fn report(e: &Error) -> u8 {
    match e {
        // Diagnostics are already formatted with their locations.
        Error::Config(diagnostics) => eprintln!("{diagnostics}"),
        other => eprintln!("error: {other}"),
    }
    e.exit_code()
}

/// Loads the pipeline named by the global flags, printing configuration warnings.
fn load(global: &Global) -> Result<Pipeline, Error> {
    let pipeline = Pipeline::load(
        &global.config,
        global.root.as_deref(),
        global.landing.as_deref(),
    )?;
    for w in &pipeline.warnings {
        tracing::warn!("{w}");
    }
    Ok(pipeline)
}

/// `--shard` splits landed files between Bronze jobs: any other table in the selection is a
/// usage error.
fn only_bronze_with_shard(
    shard: Option<medallion_core::Shard>,
    tables: &[medallion_config::TableRef],
) -> Result<(), Error> {
    if let Some(shard) = shard
        && let Some(other) = tables
            .iter()
            .find(|t| t.layer != medallion_config::Layer::Bronze)
    {
        return Err(Error::Usage(format!(
            "--shard {shard} splits landed files between Bronze jobs; `{other}` is not a Bronze \
             table (add --layer bronze)"
        )));
    }
    Ok(())
}

/// The async runtime for commands that touch storage.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))
}
