//! Column-level lineage: for every column of every table, the input columns it is computed
//! from, worked out from the configuration without reading data. Bronze columns come from the
//! source's fields of the same name; Silver columns from the columns their expressions
//! reference (through earlier computed columns and lookups); Gold SQL models from their
//! DataFusion logical plan; built-in Gold models from their definition (SPEC 4b).

use std::collections::BTreeMap;

use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};
use deltalake::datafusion::scalar::ScalarValue;
use medallion_config::Builtin;
use serde::Serialize;

/// How an output column derives from an input column (the OpenLineage transformation
/// subtypes of a direct dependency), from the least to the most transforming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Transform {
    /// The value itself.
    Identity,
    /// A function of the value, row by row.
    Transformation,
    /// An aggregate over rows.
    Aggregation,
}

/// One input column: (`layer.table`, or `landing:<folder>` for a source, and the column).
pub type Origin = (String, String);

/// The input columns of one output column, each with how it is transformed.
pub type Origins = BTreeMap<Origin, Transform>;

/// Every table's columns (in order) with their origins, by `layer.table`.
pub type ColumnLineage = BTreeMap<String, Vec<(String, Origins)>>;

/// Adds `from` to `into`, keeping the strongest transformation, raised to at least `at_least`.
pub(crate) fn merge(into: &mut Origins, from: &Origins, at_least: Transform) {
    for (origin, t) in from {
        let t = (*t).max(at_least);
        into.entry(origin.clone())
            .and_modify(|old| *old = (*old).max(t))
            .or_insert(t);
    }
}

/// The columns an expression reads: `(column, Some(field))` for a field of a struct column
/// (`fx.usd_per_unit`), `(column, None)` otherwise.
pub(crate) fn expr_refs(
    expr: &Expr,
) -> Vec<(deltalake::datafusion::common::Column, Option<String>)> {
    let mut out = Vec::new();
    let _ = expr.apply(|e| {
        if let Expr::ScalarFunction(f) = e
            && f.func.name() == "get_field"
            && let [
                Expr::Column(c),
                Expr::Literal(ScalarValue::Utf8(Some(field)), _),
            ] = f.args.as_slice()
        {
            out.push((c.clone(), Some(field.clone())));
            return Ok(TreeNodeRecursion::Jump);
        }
        if let Expr::Column(c) = e {
            out.push((c.clone(), None));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Whether an expression is a bare column (possibly aliased or cast to its own type).
fn is_bare_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) => true,
        Expr::Alias(a) => is_bare_column(&a.expr),
        _ => false,
    }
}

/// Whether an expression contains an aggregate or window function.
fn aggregates(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        if matches!(e, Expr::AggregateFunction(_) | Expr::WindowFunction(_)) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The origins of each output column of a logical plan, in the plan's column order.
pub fn plan_lineage(plan: &LogicalPlan) -> Vec<Origins> {
    let inputs: Vec<Vec<Origins>> = plan.inputs().into_iter().map(plan_lineage).collect();
    let of_exprs = |exprs: &mut dyn Iterator<Item = &Expr>, input: &LogicalPlan, at: Transform| {
        let schema = input.schema();
        let lineage = &inputs[0];
        exprs
            .map(|e| {
                let mut origins = Origins::new();
                let kind = if aggregates(e) {
                    Transform::Aggregation
                } else if is_bare_column(e) {
                    Transform::Identity
                } else {
                    Transform::Transformation
                };
                for (c, _) in expr_refs(e) {
                    if let Ok(i) = schema.index_of_column(&c) {
                        merge(&mut origins, &lineage[i], kind.max(at));
                    }
                }
                origins
            })
            .collect::<Vec<_>>()
    };
    match plan {
        LogicalPlan::TableScan(scan) => scan
            .projected_schema
            .fields()
            .iter()
            .map(|f| {
                Origins::from([(
                    (scan.table_name.to_string(), f.name().clone()),
                    Transform::Identity,
                )])
            })
            .collect(),
        LogicalPlan::Projection(p) => of_exprs(&mut p.expr.iter(), &p.input, Transform::Identity),
        LogicalPlan::Aggregate(a) => {
            let mut out = of_exprs(&mut a.group_expr.iter(), &a.input, Transform::Identity);
            out.extend(of_exprs(
                &mut a.aggr_expr.iter(),
                &a.input,
                Transform::Aggregation,
            ));
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = inputs[0].clone();
            out.extend(of_exprs(
                &mut w.window_expr.iter(),
                &w.input,
                Transform::Aggregation,
            ));
            out
        }
        LogicalPlan::Union(_) => {
            let mut out = inputs[0].clone();
            for other in &inputs[1..] {
                for (o, i) in out.iter_mut().zip(other) {
                    let i = i.clone();
                    merge(o, &i, Transform::Identity);
                }
            }
            out
        }
        _ => {
            let width = plan.schema().fields().len();
            let concatenated: Vec<Origins> = inputs.iter().flatten().cloned().collect();
            if concatenated.len() == width {
                // Filters, sorts, limits, aliases, distinct keep their input's columns; joins
                // put their inputs' columns side by side.
                concatenated
            } else {
                // Anything else: each column may come from any input column.
                let mut all = Origins::new();
                for o in &concatenated {
                    merge(&mut all, o, Transform::Transformation);
                }
                vec![all; width]
            }
        }
    }
}

/// The origins of a built-in model's columns, given the tables its inputs name
/// (`events`, `ad_spend`, `campaigns`).
pub fn builtin_lineage(builtin: Builtin, input: &dyn Fn(&str) -> String) -> Vec<(String, Origins)> {
    use Transform::{Aggregation as A, Identity as I, Transformation as T};
    let (events, spend, campaigns) = (input("events"), input("ad_spend"), input("campaigns"));
    let col = |table: &String, column: &str, t: Transform| ((table.clone(), column.to_string()), t);
    // A conversion: a purchase, found by its type and time and credited through its identity.
    let conversions = |t| {
        vec![
            col(&events, "event_id", t),
            col(&events, "event_type", t),
            col(&events, "identity", t),
            col(&events, "event_time", t),
            col(&events, "campaign_id", t),
        ]
    };
    let spec: Vec<(&str, Vec<(Origin, Transform)>)> = match builtin {
        Builtin::CampaignDaily => vec![
            (
                "date",
                vec![col(&spend, "date", I), col(&events, "event_time", T)],
            ),
            (
                "campaign_id",
                vec![
                    col(&spend, "campaign_id", I),
                    col(&events, "campaign_id", I),
                ],
            ),
            ("impressions", vec![col(&spend, "impressions", A)]),
            ("clicks", vec![col(&spend, "clicks", A)]),
            ("spend_usd", vec![col(&spend, "spend_usd", A)]),
            ("conversions", conversions(A)),
            ("revenue_usd", vec![col(&events, "revenue_usd", A)]),
            (
                "ctr",
                vec![col(&spend, "clicks", A), col(&spend, "impressions", A)],
            ),
            (
                "cpc",
                vec![col(&spend, "spend_usd", A), col(&spend, "clicks", A)],
            ),
            (
                "cpm",
                vec![col(&spend, "spend_usd", A), col(&spend, "impressions", A)],
            ),
            ("conversion_rate", {
                let mut v = conversions(A);
                v.push(col(&spend, "clicks", A));
                v
            }),
            ("cpa", {
                let mut v = conversions(A);
                v.push(col(&spend, "spend_usd", A));
                v
            }),
            (
                "roas",
                vec![col(&events, "revenue_usd", A), col(&spend, "spend_usd", A)],
            ),
            (
                "roi",
                vec![col(&events, "revenue_usd", A), col(&spend, "spend_usd", A)],
            ),
        ],
        Builtin::ChannelCac => vec![
            (
                "month",
                vec![col(&events, "event_time", T), col(&spend, "date", T)],
            ),
            (
                "channel",
                vec![
                    col(&campaigns, "channel", I),
                    col(&events, "campaign_id", T),
                ],
            ),
            ("new_customers", conversions(A)),
            (
                "spend_usd",
                vec![col(&spend, "spend_usd", A), col(&campaigns, "channel", T)],
            ),
            ("cac", {
                let mut v = conversions(A);
                v.push(col(&spend, "spend_usd", A));
                v
            }),
        ],
        Builtin::Attribution => vec![
            ("date", vec![col(&events, "event_time", T)]),
            ("model", vec![]),
            (
                "channel",
                vec![
                    col(&campaigns, "channel", I),
                    col(&events, "campaign_id", T),
                ],
            ),
            ("campaign_id", vec![col(&events, "campaign_id", I)]),
            ("conversions", conversions(A)),
            (
                "revenue_usd",
                vec![
                    col(&events, "revenue_usd", A),
                    col(&events, "event_time", A),
                ],
            ),
        ],
    };
    spec.into_iter()
        .map(|(name, origins)| {
            let mut o = Origins::new();
            for (origin, t) in origins {
                merge(&mut o, &Origins::from([(origin, t)]), Transform::Identity);
            }
            (name.to_string(), o)
        })
        .collect()
}
