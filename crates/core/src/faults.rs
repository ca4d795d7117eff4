//! Crash points for fault-injection tests: `MEDALLION_CRASH_AT=<point>` makes the process
//! abort (no cleanup, like a SIGKILL) when it reaches that point, so tests can check that
//! a re-run after a crash at each commit boundary converges to the right state.

/// Aborts the process if `MEDALLION_CRASH_AT` names `point`.
pub fn crash_point(point: &str) {
    if std::env::var("MEDALLION_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("crash point `{point}` reached: aborting (MEDALLION_CRASH_AT)");
        std::process::abort();
    }
}
