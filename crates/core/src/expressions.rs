//! Plans the SQL of Silver tables with DataFusion during validation: every column expression
//! (in order, each seeing the Bronze columns, the lookups and the columns above it), every
//! lookup key and match, and every expectation (which must be boolean), against the schemas the
//! configuration implies. Errors point at the expression in `layers.yaml`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, TimeUnit};
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::{DFSchema, TableReference};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::logical_expr::ExprSchemable;
use deltalake::datafusion::prelude::SessionContext;
use medallion_config::compile::sql_position;
use medallion_config::{
    Builtin, ColumnType, Config, Dag, Diagnostic, Layer, Located, SilverTable, TableRef,
};

/// The Arrow type of a declared Bronze column type.
pub fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Int => DataType::Int32,
        ColumnType::Long => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

use crate::column_lineage::{
    ColumnLineage, Origins, Transform, builtin_lineage, expr_refs, merge, plan_lineage,
};

/// Columns in order, each possibly qualified (lookups).
type Columns = Vec<(Option<String>, String, DataType)>;

fn df_schema(columns: &Columns) -> Result<DFSchema, String> {
    let fields: Vec<(Option<TableReference>, Arc<Field>)> = columns
        .iter()
        .map(|(q, name, t)| {
            (
                q.as_ref().map(|q| TableReference::bare(q.clone())),
                Arc::new(Field::new(name, t.clone(), true)),
            )
        })
        .collect();
    DFSchema::new_with_metadata(fields, HashMap::new()).map_err(|e| e.to_string())
}

/// Replaces (or adds) an unqualified column.
fn set_column(columns: &mut Columns, name: &str, data_type: DataType) {
    match columns
        .iter_mut()
        .find(|(q, n, _)| q.is_none() && n == name)
    {
        Some(slot) => slot.2 = data_type,
        None => columns.push((None, name.to_string(), data_type)),
    }
}

/// Checks every Silver table's SQL; returns diagnostics located in the YAML.
pub fn check(config: &Config, dag: &Dag, text: &str) -> Vec<Diagnostic> {
    analyze(config, dag, text).0
}

/// The column-level lineage of every table (see [`crate::column_lineage`]), from the same
/// planning `validate` does; tables whose SQL does not plan are left out.
pub fn column_lineage(config: &Config, dag: &Dag) -> ColumnLineage {
    analyze(config, dag, "").1
}

/// Plans every expression and model: the diagnostics, and the column lineage found.
fn analyze(config: &Config, dag: &Dag, text: &str) -> (Vec<Diagnostic>, ColumnLineage) {
    let mut lineage = ColumnLineage::new();
    let mut ctx = SessionContext::new();
    if let Err(e) = crate::functions::register(&mut ctx) {
        let d = Diagnostic::error(Default::default(), "", format!("engine functions: {e}"));
        return (vec![d], lineage);
    }
    // Bronze columns: the source's fields of the same name.
    for table in dag.layer(Layer::Bronze) {
        let Some(source) = dag
            .source_of(table)
            .and_then(|s| config.sources.iter().find(|(k, _)| k.value == *s))
            .map(|(_, s)| s)
        else {
            continue;
        };
        let dataset = format!(
            "landing:{}",
            source.path.as_ref().map_or_else(
                || format!(
                    "{}/",
                    dag.source_of(table).map(|n| n.as_str()).unwrap_or("")
                ),
                |p| p.value.clone()
            )
        );
        let columns = source
            .columns
            .keys()
            .map(|c| {
                let origin = (
                    (dataset.clone(), c.as_str().to_string()),
                    Transform::Identity,
                );
                (c.as_str().to_string(), Origins::from([origin]))
            })
            .collect();
        lineage.insert(table.to_string(), columns);
    }
    let mut out = Vec::new();
    // Output columns of Silver tables planned so far, for lookups and Gold models.
    let mut silver_outputs: BTreeMap<String, Columns> = BTreeMap::new();
    for table in dag.layer(Layer::Silver) {
        let Some((name, def)) = config.silver.iter().find(|(k, _)| k.value == table.name) else {
            continue;
        };
        let (columns, diagnostics, columns_lineage) = plan_table(
            &ctx,
            config,
            dag,
            def,
            &silver_outputs,
            text,
            &format!("silver.{name}"),
        );
        out.extend(diagnostics);
        if let Some(columns) = columns_lineage {
            lineage.insert(table.to_string(), columns);
        }
        if let Some(columns) = columns {
            silver_outputs.insert(name.value.as_str().to_string(), columns);
        }
    }
    let planned_all_silver = silver_outputs.len() == config.silver.len();
    if planned_all_silver {
        out.extend(check_gold(
            &ctx,
            config,
            dag,
            &silver_outputs,
            text,
            &mut lineage,
        ));
    }
    (out, lineage)
}

/// The columns of a built-in Gold model.
pub fn builtin_columns(builtin: Builtin) -> Vec<(&'static str, DataType)> {
    use DataType::{Date32, Float64, Int64, Utf8};
    match builtin {
        Builtin::CampaignDaily => vec![
            ("date", Date32),
            ("campaign_id", Utf8),
            ("impressions", Int64),
            ("clicks", Int64),
            ("spend_usd", Float64),
            ("conversions", Int64),
            ("revenue_usd", Float64),
            ("ctr", Float64),
            ("cpc", Float64),
            ("cpm", Float64),
            ("conversion_rate", Float64),
            ("cpa", Float64),
            ("roas", Float64),
            ("roi", Float64),
        ],
        Builtin::ChannelCac => vec![
            ("month", Date32),
            ("channel", Utf8),
            ("new_customers", Int64),
            ("spend_usd", Float64),
            ("cac", Float64),
        ],
        Builtin::Attribution => vec![
            ("date", Date32),
            ("model", Utf8),
            ("channel", Utf8),
            ("campaign_id", Utf8),
            ("conversions", Float64),
            ("revenue_usd", Float64),
        ],
    }
}

/// Registers an empty table of `fields` as `layer.name`.
fn register_empty(
    ctx: &SessionContext,
    layer: &str,
    name: &str,
    fields: Vec<Field>,
) -> Result<(), String> {
    let schema = Arc::new(deltalake::arrow::datatypes::Schema::new(fields));
    let table = MemTable::try_new(schema, vec![vec![]]).map_err(|e| e.to_string())?;
    ctx.register_table(format!("{layer}.{name}"), Arc::new(table))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Plans every Gold SQL model, in DAG order, against the Silver and Gold schemas.
fn check_gold(
    ctx: &SessionContext,
    config: &Config,
    dag: &Dag,
    silver: &BTreeMap<String, Columns>,
    text: &str,
    lineage: &mut ColumnLineage,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let catalog = ctx
        .catalog("datafusion")
        .expect("the default catalog exists");
    for layer in ["silver", "gold"] {
        let _ = catalog.register_schema(layer, Arc::new(MemorySchemaProvider::new()));
    }
    for (name, columns) in silver {
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|(_, n, t)| Field::new(n, t.clone(), true))
            .collect();
        fields.push(Field::new("_source_file", DataType::Utf8, true));
        fields.push(Field::new("_source_line", DataType::Int64, true));
        fields.push(Field::new("_bronze_version", DataType::Int64, true));
        if let Err(e) = register_empty(ctx, "silver", name, fields) {
            out.push(Diagnostic::error(
                Default::default(),
                format!("silver.{name}"),
                e,
            ));
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => return vec![Diagnostic::error(Default::default(), "", e.to_string())],
    };
    for table in dag.layer(Layer::Gold) {
        let Some((name, def)) = config.gold.iter().find(|(k, _)| k.value == table.name) else {
            continue;
        };
        let fields: Vec<Field> = match (&def.builtin, &def.sql) {
            (Some(b), _) => {
                let input = |name: &str| {
                    def.inputs
                        .iter()
                        .find(|(k, _)| k.value.as_str() == name)
                        .map_or_else(|| format!("silver.{name}"), |(_, t)| t.value.to_string())
                };
                lineage.insert(table.to_string(), builtin_lineage(b.value, &input));
                builtin_columns(b.value)
                    .into_iter()
                    .map(|(n, t)| Field::new(n, t, true))
                    .collect()
            }
            (None, Some(sql)) => {
                match runtime.block_on(ctx.state().create_logical_plan(&sql.value)) {
                    Ok(plan) => {
                        let origins = plan_lineage(&plan);
                        lineage.insert(
                            table.to_string(),
                            plan.schema()
                                .fields()
                                .iter()
                                .map(|f| f.name().clone())
                                .zip(origins)
                                .collect(),
                        );
                        plan.schema()
                            .fields()
                            .iter()
                            .map(|f| f.as_ref().clone().with_nullable(true))
                            .collect()
                    }
                    Err(e) => {
                        let loc = sql_position(sql, text, None, None);
                        out.push(Diagnostic::error(
                            loc,
                            format!("gold.{name}.sql"),
                            format!("SQL does not plan: {e}"),
                        ));
                        continue;
                    }
                }
            }
            (None, None) => continue,
        };
        if let Some(missing) = def
            .key
            .iter()
            .find(|k| !fields.iter().any(|f| f.name() == k.as_str()))
        {
            out.push(Diagnostic::error(
                missing.loc,
                format!("gold.{name}.key"),
                format!("key column `{missing}` is not a column of the model"),
            ));
        }
        if let Err(e) = register_empty(ctx, "gold", name.as_str(), fields) {
            out.push(Diagnostic::error(name.loc, format!("gold.{name}"), e));
        }
    }
    out
}

/// A planned Silver table: its written columns and their lineage (`None`: it does not plan),
/// and the problems found.
type Planned = (
    Option<Columns>,
    Vec<Diagnostic>,
    Option<Vec<(String, Origins)>>,
);

/// Plans one Silver table; returns its written columns.
fn plan_table(
    ctx: &SessionContext,
    config: &Config,
    dag: &Dag,
    def: &SilverTable,
    silver: &BTreeMap<String, Columns>,
    text: &str,
    path: &str,
) -> Planned {
    let mut problems = Vec::new();
    let error = |expr: &Located<String>, at: &str, message: String| {
        let loc = sql_position(expr, text, None, None);
        Diagnostic::error(loc, format!("{path}.{at}"), message)
    };
    // The Bronze input: declared source columns and the metadata columns.
    let bronze: &TableRef = &def.from.value;
    let source = dag
        .source_of(bronze)
        .and_then(|s| config.sources.iter().find(|(k, _)| k.value == *s))
        .map(|(_, s)| s);
    let mut columns: Columns = source
        .map(|s| {
            s.columns
                .iter()
                .map(|(n, t)| (None, n.as_str().to_string(), arrow_type(t.value)))
                .collect()
        })
        .unwrap_or_default();
    columns.extend(
        crate::columns::bronze_metadata_fields()
            .into_iter()
            .map(|f| (None, f.name().clone(), f.data_type().clone())),
    );
    let infers = source.is_some_and(|s| s.infer_undeclared);
    // Where each column of the row being computed comes from: Bronze columns first.
    let mut origins: BTreeMap<String, Origins> = columns
        .iter()
        .map(|(_, n, _)| {
            let origin = ((bronze.to_string(), n.clone()), Transform::Identity);
            (n.clone(), Origins::from([origin]))
        })
        .collect();
    let mut lookup_tables: BTreeMap<String, String> = BTreeMap::new();
    // Lookups: the dimension's columns, qualified by the lookup's name.
    for (lookup, spec) in def.lookups.iter() {
        let Some(dimension) = silver.get(spec.table.name.as_str()) else {
            continue;
        };
        let dim_schema = match df_schema(dimension) {
            Ok(s) => s,
            Err(e) => return (None, vec![Diagnostic::error(spec.table.loc, path, e)], None),
        };
        if let Err(e) = ctx.parse_sql_expr(&spec.key.value, &dim_schema) {
            problems.push(error(
                &spec.key,
                &format!("lookups.{lookup}.key"),
                format!("lookup key does not plan: {e}"),
            ));
        }
        // A lookup is one struct-typed column named after it, so `fx.usd_per_unit` reads a
        // field of it and never collides with the row's own columns.
        let fields: Vec<Field> = dimension
            .iter()
            .map(|(_, n, t)| Field::new(n, t.clone(), true))
            .collect();
        columns.push((
            None,
            lookup.as_str().to_string(),
            DataType::Struct(fields.into()),
        ));
        lookup_tables.insert(lookup.as_str().to_string(), spec.table.value.to_string());
    }
    for (lookup, spec) in def.lookups.iter() {
        let schema = match df_schema(&columns) {
            Ok(s) => s,
            Err(e) => {
                return (
                    None,
                    vec![Diagnostic::error(spec.match_expr.loc, path, e)],
                    None,
                );
            }
        };
        if let Err(e) = ctx.parse_sql_expr(&spec.match_expr.value, &schema) {
            problems.push(error(
                &spec.match_expr,
                &format!("lookups.{lookup}.match"),
                format!("lookup match does not plan: {e}"),
            ));
        }
    }
    // Columns, in order.
    let mut written: Columns = Vec::new();
    for (name, column) in def.columns.iter() {
        let schema = match df_schema(&columns) {
            Ok(s) => s,
            Err(e) => {
                return (
                    None,
                    vec![Diagnostic::error(column.expr.loc, path, e)],
                    None,
                );
            }
        };
        let planned = ctx
            .parse_sql_expr(&column.expr.value, &schema)
            .and_then(|expr| Ok((expr.get_type(&schema)?, expr)));
        match planned {
            Ok((data_type, expr)) => {
                set_column(&mut columns, name.as_str(), data_type.clone());
                let bare = matches!(expr, deltalake::datafusion::logical_expr::Expr::Column(_));
                let kind = if bare {
                    Transform::Identity
                } else {
                    Transform::Transformation
                };
                let mut from = Origins::new();
                for (c, field) in expr_refs(&expr) {
                    match (lookup_tables.get(&c.name), field) {
                        (Some(dimension), Some(field)) => merge(
                            &mut from,
                            &Origins::from([((dimension.clone(), field), Transform::Identity)]),
                            kind,
                        ),
                        _ => {
                            if let Some(o) = origins.get(&c.name) {
                                merge(&mut from, &o.clone(), kind);
                            }
                        }
                    }
                }
                origins.insert(name.as_str().to_string(), from);
                if column.keep {
                    written.push((None, name.as_str().to_string(), data_type));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let undeclared = infers && message.contains("No field named");
                let d = error(
                    &column.expr,
                    &format!("columns.{name}"),
                    format!("column expression does not plan: {message}"),
                );
                problems.push(if undeclared {
                    Diagnostic { severity: medallion_config::Severity::Warning, ..d }
                        .with_help("if the column is inferred from the data (not declared in the source), this is checked at run time")
                } else {
                    d
                });
                // Keep going with the column typed as text, so later columns can be checked.
                set_column(&mut columns, name.as_str(), DataType::Utf8);
            }
        }
    }
    // Expectations: boolean predicates over the computed row.
    let schema = match df_schema(&columns) {
        Ok(s) => s,
        Err(e) => {
            return (
                None,
                vec![Diagnostic::error(Default::default(), path, e)],
                None,
            );
        }
    };
    for (rule, expectation) in def.expectations.iter() {
        match ctx
            .parse_sql_expr(&expectation.expr.value, &schema)
            .and_then(|e| e.get_type(&schema))
        {
            Ok(DataType::Boolean | DataType::Null) => {}
            Ok(other) => problems.push(error(
                &expectation.expr,
                &format!("expectations.{rule}.expr"),
                format!("an expectation must be a boolean predicate, this one is {other}"),
            )),
            Err(e) => problems.push(error(
                &expectation.expr,
                &format!("expectations.{rule}.expr"),
                format!("expectation does not plan: {e}"),
            )),
        }
    }
    let failed = problems
        .iter()
        .any(|d| d.severity == medallion_config::Severity::Error);
    let mut table_lineage = None;
    if !failed {
        let mut columns_lineage: Vec<(String, Origins)> = written
            .iter()
            .map(|(_, n, _)| (n.clone(), origins.get(n).cloned().unwrap_or_default()))
            .collect();
        for (column, from) in [
            ("_source_file", "_source_file"),
            ("_source_line", "_source_line"),
        ] {
            let origin = ((bronze.to_string(), from.to_string()), Transform::Identity);
            columns_lineage.push((column.to_string(), Origins::from([origin])));
        }
        table_lineage = Some(columns_lineage);
    }
    ((!failed).then_some(written), problems, table_lineage)
}
