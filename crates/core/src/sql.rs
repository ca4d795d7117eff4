//! SQL analysis for configuration checks: which tables a query reads, with DataFusion's parser.

use deltalake::datafusion::sql::parser::DFParser;
use deltalake::datafusion::sql::resolve::resolve_table_references;
use medallion_config::{Config, Dag, Diagnostic, SqlAnalyzer, SqlError};

/// Reads table references with DataFusion's SQL parser (the dialect queries run in).
#[derive(Debug, Default, Clone, Copy)]
pub struct DataFusionSql;

impl SqlAnalyzer for DataFusionSql {
    fn table_references(&self, sql: &str) -> Result<Vec<String>, SqlError> {
        let statements = DFParser::parse_sql(sql).map_err(|e| sql_error(&e.to_string()))?;
        if statements.len() != 1 {
            return Err(SqlError {
                message: format!(
                    "expected one SELECT query, found {} statements",
                    statements.len()
                ),
                line: None,
                column: None,
            });
        }
        let statement = &statements[0];
        let (tables, _ctes) =
            resolve_table_references(statement, true).map_err(|e| sql_error(&e.to_string()))?;
        Ok(tables.iter().map(|t| t.to_string()).collect())
    }

    fn check(&self, config: &Config, dag: &Dag, text: &str) -> Vec<Diagnostic> {
        crate::expressions::check(config, dag, text)
    }
}

/// Turns a parser message (which ends with "at Line: L, Column: C") into a located error.
fn sql_error(message: &str) -> SqlError {
    let position = message.rfind("Line: ").and_then(|at| {
        let rest = &message[at + "Line: ".len()..];
        let (line, rest) = rest.split_once(", Column: ")?;
        let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some((line.trim().parse().ok()?, column.parse().ok()?))
    });
    let cleaned = message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .split(" at Line: ")
        .next()
        .unwrap_or(message)
        .trim_end_matches("\")")
        .to_string();
    SqlError {
        message: cleaned,
        line: position.map(|p: (u64, u64)| p.0),
        column: position.map(|p| p.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qualified_references_and_ignores_ctes() {
        let refs = DataFusionSql
            .table_references(
                "WITH t AS (SELECT * FROM silver.events) SELECT * FROM t JOIN gold.attribution a ON true",
            )
            .unwrap();
        assert_eq!(refs, ["gold.attribution", "silver.events"]);
    }

    #[test]
    fn locates_syntax_errors() {
        let e = DataFusionSql
            .table_references("SELECT a,\n  FROM FROM silver.events")
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.column.is_some(), "{e:?}");
    }
}
