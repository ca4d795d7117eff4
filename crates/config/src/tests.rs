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
