use super::*;

/// Reads `FROM x` / `JOIN x` tokens: enough for tests of the config crate alone (the engine
/// plugs in DataFusion's parser).
struct TokenSql;

impl SqlAnalyzer for TokenSql {
    fn table_references(&self, sql: &str) -> Result<Vec<String>, SqlError> {
        if sql.contains("SELEC ") {
            return Err(SqlError {
                message: "syntax error".into(),
                line: Some(1),
                column: Some(1),
            });
        }
        let tokens: Vec<&str> = sql.split_whitespace().collect();
        Ok(tokens
            .windows(2)
            .filter(|w| w[0].eq_ignore_ascii_case("from") || w[0].eq_ignore_ascii_case("join"))
            .map(|w| w[1].trim_end_matches([',', ')', ';']).to_string())
            .collect())
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Loaded, Diagnostics> {
    load_str(text, "layers.yaml", &no_env, &TokenSql)
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d
            .errors()
            .map(|d| format!("{}:{} {}", d.loc.line, d.loc.column, d.message))
            .collect(),
    }
}

const MINIMAL: &str = r#"
version: 1
pipeline: shop
sources:
  orders:
    format: ndjson
    columns:
      order_id: string
      amount: double
bronze:
  orders: {}
silver:
  orders:
    from: bronze.orders
    key: [order_id]
    columns:
      order_id: "trim(order_id)"
      amount: amount
    expectations:
      positive:
        expr: "amount > 0"
        action: drop
gold:
  revenue:
    sql: |
      SELECT sum(amount) AS revenue
      FROM silver.orders
"#;

#[test]
fn minimal_config_loads_with_dag_and_order() {
    let loaded = load(MINIMAL).unwrap();
    let order: Vec<String> = loaded.dag.order().iter().map(ToString::to_string).collect();
    assert_eq!(order, ["bronze.orders", "silver.orders", "gold.revenue"]);
    let silver = loaded.config.silver.values().next().unwrap();
    assert_eq!(silver.columns.len(), 2);
    let (name, def) = silver.columns.iter().next().unwrap();
    assert_eq!(name.as_str(), "order_id");
    assert_eq!(def.expr.value, "trim(order_id)");
    assert_eq!(def.expr.loc, Loc::new(17, 17));
    let expectation = silver.expectations.iter().next().unwrap().1;
    assert_eq!(expectation.action.value, Action::Drop);
    assert_eq!(loaded.config.storage.root.value, "./lakehouse");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let text = MINIMAL
        .replace(
            "    format: ndjson",
            "    fromat: ndjson\n    format: ndjson",
        )
        .replace("    key: [order_id]", "    kye: [order_id]")
        .replace("        action: drop", "        acton: drop");
    let all = load(&text).unwrap_err();
    let rendered: Vec<(u64, String, Option<String>)> = all
        .errors()
        .map(|d| (d.loc.line, d.message.clone(), d.help.clone()))
        .collect();
    assert_eq!(
        rendered,
        [
            (
                6,
                "unknown key `fromat`".to_string(),
                Some("did you mean `format`?".to_string())
            ),
            (
                16,
                "unknown key `kye`".to_string(),
                Some("did you mean `key`?".to_string())
            ),
            (22, "missing required field `action`".to_string(), None),
            (
                23,
                "unknown key `acton`".to_string(),
                Some("did you mean `action`?".to_string())
            ),
        ]
    );
}

#[test]
fn type_errors_in_different_tables_are_all_reported() {
    let text = MINIMAL
        .replace("      amount: double", "      amount: float")
        .replace("        action: drop", "        action: [drop]");
    assert_eq!(
        errors(&text),
        [
            "9:15 unknown value `float`, expected one of `string`, `boolean`, `int`, `long`, `double`, `date`, `timestamp`, `json`",
            "22:17 expected one of `warn`, `drop`, `quarantine`, `fail`, found a list",
        ]
    );
}

#[test]
fn variables_are_interpolated_and_unset_ones_named() {
    let text = MINIMAL.replace(
        "pipeline: shop",
        "pipeline: shop\nstorage:\n  root: \"s3://${BUCKET}/lake\"\n  landing: ${LANDING:-./in}\n  commit_retries: ${RETRIES}",
    );
    let env = |name: &str| match name {
        "BUCKET" => Some("acme".to_string()),
        "RETRIES" => Some("4".to_string()),
        _ => None,
    };
    let loaded = load_str(&text, "layers.yaml", &env, &TokenSql).unwrap();
    assert_eq!(loaded.config.storage.root.value, "s3://acme/lake");
    assert_eq!(loaded.config.storage.landing.value, "./in");
    assert_eq!(loaded.config.storage.commit_retries, 4);

    let missing = load(&text).unwrap_err();
    let messages: Vec<_> = missing.errors().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "environment variable `BUCKET` is not set",
            "environment variable `RETRIES` is not set"
        ]
    );
}

#[test]
fn references_cycles_and_columns_are_checked() {
    let text = MINIMAL
        .replace("    from: bronze.orders", "    from: bronze.ordres")
        .replace(
            "      FROM silver.orders",
            "      FROM silver.orders JOIN gold.b",
        )
        + "  b:\n    sql: SELECT * FROM gold.revenue\n"
        + "  c:\n    builtin: attribution\n    inputs: { events: silver.orders, campaign: silver.orders }\n";
    assert_eq!(
        errors(&text),
        [
            "14:11 unknown table `bronze.ordres`",
            "28:3 dependency cycle: gold.b → gold.revenue → gold.b",
            "31:14 `attribution` needs its input `campaigns` bound to a table",
            "32:38 `attribution` has no input `campaign`",
        ]
    );
}

#[test]
fn credentials_are_refused() {
    for extra in [
        "  aws_secret_access_key: abc",
        "  options:\n    access_key_id: x",
    ] {
        let text = MINIMAL.replace(
            "pipeline: shop",
            &format!("pipeline: shop\nstorage:\n{extra}"),
        );
        let all = load(&text).unwrap_err();
        assert_eq!(all.errors().count(), 1, "{all}");
        let help = all
            .errors()
            .next()
            .unwrap()
            .help
            .clone()
            .unwrap_or_default();
        assert!(help.contains("never read from layers.yaml"), "{help}");
    }
}

#[test]
fn schema_describes_sections() {
    let schema = json_schema();
    for needle in [
        "\"silver\"",
        "\"expectations\"",
        "\"incremental_by_date\"",
        "\"additionalProperties\": false",
    ] {
        assert!(schema.contains(needle), "schema lacks {needle}");
    }
}

// ---------------------------------------------------------------------------------------
// SQL positions: a position in the SQL text (as the SQL parser reports it) mapped back to
// where it is written in the YAML, in each way YAML writes a string.
// ---------------------------------------------------------------------------------------

/// The `sql` value of `yaml` (a mapping), with where it starts.
fn sql_value(yaml: &str) -> Located<String> {
    let root = node::parse(yaml).unwrap();
    let sql = root.get("sql").expect("an `sql` key");
    Located::new(sql.as_str().expect("a string").to_string(), sql.loc)
}

/// The 1-based line and column (in characters) of the first `needle` in `text`.
fn line_column(text: &str, needle: &str) -> (u64, u64) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in {text:?}"));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    (line as u64, column as u64)
}

/// Where `sql_position` puts the first `needle` of the SQL (`line:column`).
fn mapped(yaml: &str, needle: &str) -> String {
    let sql = sql_value(yaml);
    let (line, column) = line_column(&sql.value, needle);
    let loc = compile::sql_position(&sql, yaml, Some(line), Some(column));
    format!("{}:{}", loc.line, loc.column)
}

/// Where `written` first is in the YAML source (`line:column`).
fn written_at(yaml: &str, written: &str) -> String {
    let (line, column) = line_column(yaml, written);
    format!("{line}:{column}")
}

/// Asserts `needle` in the SQL of `yaml` maps to where `written` is in the source.
#[track_caller]
fn assert_maps(yaml: &str, needle: &str, written: &str) {
    assert_eq!(
        mapped(yaml, needle),
        written_at(yaml, written),
        "{needle:?} in {:?}\n{yaml}",
        sql_value(yaml).value
    );
}

#[test]
fn sql_position_in_literal_blocks() {
    let yaml = "x: 1\nsql: |\n  SELECT a,\n    b\n  FROM t.bad\n";
    assert_maps(yaml, "SELECT", "SELECT");
    assert_maps(yaml, "b", "b\n");
    assert_maps(yaml, "t.bad", "t.bad");
    // Blank lines first (the value starts with line feeds), and with spaces in them.
    for blank in ["\n", "\n\n", "  \n", " \n\n"] {
        let yaml = format!("sql: |\n{blank}  SELECT a\n  FROM t.bad\n  WHERE c\n");
        assert_maps(&yaml, "t.bad", "t.bad");
        assert_maps(&yaml, "WHERE", "WHERE");
    }
    // Chomping and explicit indentation indicators, a comment after the header, and a list
    // item.
    assert_maps(
        "sql: |- # the query\n  SELECT\n  FROM t.bad\n",
        "t.bad",
        "t.bad",
    );
    assert_maps("sql: |2+\n    SELECT\n  FROM t.bad\n", "t.bad", "t.bad");
    assert_maps("sql: |2+\n    SELECT\n  FROM t.bad\n", "SELECT", "SELECT");
    // A value starting with a quote is still a block.
    assert_maps("sql: |\n  \"a b\" > 0\n  AND t.bad\n", "t.bad", "t.bad");
}

#[test]
fn sql_position_in_folded_blocks() {
    let yaml = "sql: >-\n  SELECT a,\n  b\n  FROM t.bad  \n  WHERE c\n";
    assert_eq!(sql_value(yaml).value, "SELECT a, b FROM t.bad   WHERE c");
    assert_maps(yaml, "b FROM", "b\n");
    assert_maps(yaml, "t.bad", "t.bad");
    assert_maps(yaml, "WHERE", "WHERE");
    // An empty line is a line feed; a more indented line keeps its line breaks.
    let yaml = "sql: >\n\n  SELECT a\n\n  FROM t\n    JOIN u.bad\n  WHERE c\n";
    assert_eq!(
        sql_value(yaml).value,
        "\nSELECT a\nFROM t\n  JOIN u.bad\nWHERE c\n"
    );
    assert_maps(yaml, "FROM", "FROM");
    assert_maps(yaml, "u.bad", "u.bad");
    assert_maps(yaml, "WHERE", "WHERE");
}

#[test]
fn sql_position_in_plain_scalars() {
    let yaml = "sql: SELECT a,\n    b\n    FROM t.bad   \n  WHERE c # why\nkey: [a]\n";
    assert_eq!(sql_value(yaml).value, "SELECT a, b FROM t.bad WHERE c");
    assert_maps(yaml, "SELECT", "SELECT");
    assert_maps(yaml, "t.bad", "t.bad");
    assert_maps(yaml, "WHERE", "WHERE");
    // Starting on the line after the key, with an empty line (a line feed) inside.
    let yaml = "sql:\n  SELECT a\n\n  FROM t.bad\n";
    assert_eq!(sql_value(yaml).value, "SELECT a\nFROM t.bad");
    assert_maps(yaml, "t.bad", "t.bad");
    // One line.
    assert_maps("sql: SELECT * FROM t.bad  # a comment\n", "t.bad", "t.bad");
}

#[test]
fn sql_position_in_quoted_scalars() {
    let yaml = "sql: \"SELECT \\\"a b\\\",\\t\n    c   \n\n    FROM \\\n      t.bad\"\n";
    assert_eq!(sql_value(yaml).value, "SELECT \"a b\",\t c\nFROM t.bad");
    assert_maps(yaml, "SELECT", "SELECT");
    assert_maps(yaml, "c", "c   ");
    assert_maps(yaml, "t.bad", "t.bad");
    // An escape is one character of the value, where its `\` is.
    assert_eq!(mapped(yaml, "\","), written_at(yaml, "\\\","));
    let yaml = "sql: 'SELECT ''it''''s'',\n  x\n  FROM t.bad'\n";
    assert_eq!(sql_value(yaml).value, "SELECT 'it''s', x FROM t.bad");
    assert_maps(yaml, "x", "x\n");
    assert_maps(yaml, "t.bad", "t.bad");
    assert_eq!(mapped(yaml, "',"), written_at(yaml, "'',"));
    // One line, in either quotes.
    assert_maps("sql: \"SELECT * FROM t.bad\"\n", "t.bad", "t.bad");
    assert_maps("sql: 'SELECT ''a'' FROM t.bad'\n", "t.bad", "t.bad");
}

#[test]
fn sql_position_falls_back_to_the_start_of_the_value() {
    let yaml = "x: 1\nsql: >-\n  SELECT a\n  FROM t.bad\n";
    let sql = sql_value(yaml);
    let at = |line, column| {
        let loc = compile::sql_position(&sql, yaml, line, column);
        format!("{}:{}", loc.line, loc.column)
    };
    assert_eq!(at(None, None), "3:3");
    assert_eq!(at(Some(1), None), "3:3");
    assert_eq!(at(Some(0), Some(0)), "3:3");
    assert_eq!(at(Some(2), Some(1)), "3:3", "no second line in the value");
    // A folded line break is the last character of its line, never past it.
    assert_eq!(at(Some(1), Some(9)), "3:10");
    // The end of the query is its last character.
    assert_eq!(at(Some(1), Some(99)), "4:12");
    // A value that is not what the source says (a variable was interpolated): the start.
    let changed = Located::new(sql.value.replace("SELECT a", "SELECT abc"), sql.loc);
    let loc = compile::sql_position(&changed, yaml, Some(1), Some(17));
    assert_eq!((loc.line, loc.column), (3, 3));
    // Up to the change, positions are still found.
    let loc = compile::sql_position(&changed, yaml, Some(1), Some(8));
    assert_eq!((loc.line, loc.column), (3, 10));
    // A value written nowhere stays nowhere.
    let nowhere = Located::unlocated(sql.value.clone());
    assert!(!compile::sql_position(&nowhere, yaml, Some(1), Some(3)).is_known());
}

#[test]
fn unknown_tables_in_folded_sql_are_reported_where_written() {
    for sql in [
        "    sql: >-\n      SELECT sum(amount) AS revenue\n      FROM silver.ordres\n",
        "    sql: SELECT sum(amount) AS revenue\n      FROM silver.ordres\n",
        "    sql: \"SELECT sum(amount) AS revenue\n      FROM silver.ordres\"\n",
        "    sql: |\n\n      SELECT sum(amount) AS revenue\n      FROM silver.ordres\n",
    ] {
        let text = MINIMAL.split("    sql: |").next().unwrap().to_string() + sql;
        let errors = errors(&text);
        let written = written_at(&text, "silver.ordres");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!("{written} unknown table `silver.ordres`")),
            "{sql}: {errors:?}"
        );
    }
}
