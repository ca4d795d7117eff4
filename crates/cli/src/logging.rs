//! Logs via `tracing` to stderr: text for people, JSON lines for clusters.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. `MEDALLION_LOG` (an `EnvFilter` directive) wins over
/// the verbosity flags.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // deltalake reports its own errors as log events too; the engine reports them once, with
    // context, so deltalake's are shown only when asked for (-v: warnings, -vv: debug).
    let deltalake = match (quiet, verbose) {
        (false, 1) => "warn",
        (false, v) if v >= 2 => "debug",
        _ => "off",
    };
    let filter = EnvFilter::try_from_env("MEDALLION_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,deltalake_core={deltalake},buoyant_kernel={deltalake},medallion={default},medallion_core={default},medallion_bronze={default},medallion_silver={default},medallion_gold={default}"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .compact()
            .init(),
    }
}
