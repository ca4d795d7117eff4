//! Semantic checks over a parsed configuration, and the DAG derived from it.
//!
//! Every check runs and every problem is reported: references that do not exist (with the
//! closest existing name), tables reading from the wrong layer, keys and partitions that
//! are not columns, SQL that does not parse, and cycles.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::{Diagnostic, Loc, did_you_mean};
use crate::located::Located;
use crate::model::{Config, GoldTable, Materialized, SilverTable};
use crate::names::{ColumnName, Layer, Name, TableRef};

/// Reads the tables a SQL query depends on. The engine plugs in DataFusion's parser.
pub trait SqlAnalyzer {
    /// The tables the query reads, as written (e.g. `silver.events`), or why it does not parse.
    fn table_references(&self, sql: &str) -> Result<Vec<String>, SqlError>;

    /// Further checks of the configuration's SQL against the schemas it implies (run only
    /// when everything else is valid; `dag` gives the order). Default: none.
    fn check(&self, _config: &Config, _dag: &Dag, _text: &str) -> Vec<Diagnostic> {
        Vec::new()
    }
}

/// A SQL problem, with its position inside the SQL text when known (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// What is wrong.
    pub message: String,
    /// Line within the SQL text.
    pub line: Option<u64>,
    /// Column within that line.
    pub column: Option<u64>,
}

/// Columns the engine adds to Silver tables; user columns may not take these names.
pub const SILVER_LINEAGE_COLUMNS: [&str; 3] = ["_source_file", "_source_line", "_bronze_version"];

/// The tables of a pipeline and their dependencies, in an order that runs inputs first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dag {
    order: Vec<TableRef>,
    upstream: BTreeMap<TableRef, Vec<TableRef>>,
    sources: BTreeMap<TableRef, Name>,
}

impl Dag {
    /// Every table, inputs before the tables that read them (ties: layer, then name).
    pub fn order(&self) -> &[TableRef] {
        &self.order
    }

    /// The tables `table` reads directly.
    pub fn upstream(&self, table: &TableRef) -> &[TableRef] {
        self.upstream.get(table).map_or(&[], Vec::as_slice)
    }

    /// The tables that read `table` directly.
    pub fn downstream(&self, table: &TableRef) -> Vec<&TableRef> {
        self.order
            .iter()
            .filter(|t| self.upstream(t).contains(table))
            .collect()
    }

    /// The source a Bronze table ingests.
    pub fn source_of(&self, table: &TableRef) -> Option<&Name> {
        self.sources.get(table)
    }

    /// Whether the table exists.
    pub fn contains(&self, table: &TableRef) -> bool {
        self.upstream.contains_key(table)
    }

    /// The tables of one layer, in run order.
    pub fn layer(&self, layer: Layer) -> impl Iterator<Item = &TableRef> {
        self.order.iter().filter(move |t| t.layer == layer)
    }
}

/// Checks the configuration and derives the DAG. Diagnostics are returned, not raised:
/// the caller decides (errors reject the config, warnings are shown).
pub fn compile(config: &Config, sql: &dyn SqlAnalyzer, text: &str) -> (Dag, Vec<Diagnostic>) {
    let mut c = Compiler {
        config,
        out: Vec::new(),
        upstream: BTreeMap::new(),
        key_locs: BTreeMap::new(),
        sources: BTreeMap::new(),
    };
    c.check_version();
    c.check_storage();
    c.check_sources();
    c.check_bronze();
    c.check_silver();
    c.check_gold(sql, text);
    c.check_attribution();
    c.check_lineage();
    let order = c.order();
    let mut out = c.out;
    let dag = Dag {
        order,
        upstream: c.upstream,
        sources: c.sources,
    };
    if !out
        .iter()
        .any(|d| d.severity == crate::diagnostic::Severity::Error)
    {
        out.extend(sql.check(config, &dag, text));
    }
    (dag, out)
}

struct Compiler<'a> {
    config: &'a Config,
    out: Vec<Diagnostic>,
    upstream: BTreeMap<TableRef, Vec<TableRef>>,
    key_locs: BTreeMap<TableRef, Loc>,
    sources: BTreeMap<TableRef, Name>,
}

impl Compiler<'_> {
    fn error(
        &mut self,
        loc: Loc,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.out.push(Diagnostic::error(loc, path, message));
        self.out.last_mut().expect("just pushed")
    }

    fn warn(
        &mut self,
        loc: Loc,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.out.push(Diagnostic::warning(loc, path, message));
        self.out.last_mut().expect("just pushed")
    }

    fn check_version(&mut self) {
        let v = &self.config.version;
        if v.value != 1 {
            self.error(
                v.loc,
                "version",
                format!("unsupported configuration version `{}`", v.value),
            )
            .help = Some("this engine reads `version: 1`".into());
        }
    }

    fn check_storage(&mut self) {
        let s = &self.config.storage;
        if s.checkpoint_interval == 0 {
            self.error(
                Loc::default(),
                "storage.checkpoint_interval",
                "must be at least 1",
            );
        }
        for (name, value) in [("root", &s.root), ("landing", &s.landing)] {
            if value.trim().is_empty() {
                self.error(
                    value.loc,
                    format!("storage.{name}"),
                    format!("`storage.{name}` is empty"),
                );
            }
        }
    }

    fn check_sources(&mut self) {
        for (name, source) in &self.config.sources {
            if let Some(path) = &source.path {
                let p = path.value.as_str();
                if p.starts_with('/') || p.contains("://") || p.split('/').any(|seg| seg == "..") {
                    self.error(path.loc, format!("sources.{name}.path"), format!("`{p}` is not a folder under the landing prefix"))
                        .help = Some("write a relative folder such as `events/`; the landing prefix itself is `storage.landing`".into());
                }
            }
            for (what, c) in [
                ("delimiter", source.csv.delimiter),
                ("quote", source.csv.quote),
            ] {
                if !c.is_ascii() {
                    self.error(
                        source.format.loc,
                        format!("sources.{name}.csv.{what}"),
                        format!("the CSV {what} `{c}` is not an ASCII character"),
                    );
                }
            }
            let mut seen = BTreeSet::new();
            for (column, _) in source.columns.iter() {
                if column.as_str().starts_with('_') {
                    self.error(column.loc, format!("sources.{name}.columns"), format!("column `{column}` starts with `_`, which is reserved for engine columns"));
                }
                if !seen.insert(column.as_str().to_ascii_lowercase()) {
                    self.error(
                        column.loc,
                        format!("sources.{name}.columns"),
                        format!("column `{column}` is declared twice (names are case-insensitive)"),
                    );
                }
            }
        }
    }

    fn check_bronze(&mut self) {
        let mut ingested: BTreeMap<Name, &Located<Name>> = BTreeMap::new();
        for (name, table) in &self.config.bronze {
            let this = TableRef::new(Layer::Bronze, name.value.clone());
            self.key_locs.insert(this.clone(), name.loc);
            self.upstream.insert(this.clone(), Vec::new());
            let (source, loc) = match &table.source {
                Some(s) => (s.value.clone(), s.loc),
                None => (name.value.clone(), name.loc),
            };
            if !self.config.sources.keys().any(|k| k.value == source) {
                let help = did_you_mean(
                    source.as_str(),
                    self.config.sources.keys().map(|k| k.as_str()),
                );
                let msg = if table.source.is_some() {
                    format!("unknown source `{source}`")
                } else {
                    format!(
                        "no source named `{source}`: a Bronze table ingests the source of its own name unless `source` says otherwise"
                    )
                };
                self.error(loc, format!("bronze.{name}.source"), msg).help = help;
                continue;
            }
            if let Some(other) = ingested.insert(source.clone(), name) {
                self.error(
                    loc,
                    format!("bronze.{name}.source"),
                    format!("source `{source}` is already ingested by `bronze.{other}`"),
                )
                .help = Some("each source feeds exactly one Bronze table".into());
            }
            self.sources.insert(this, source);
        }
        let unused: Vec<_> = self
            .config
            .sources
            .keys()
            .filter(|k| !ingested.contains_key(&k.value))
            .map(|k| (k.loc, k.value.clone()))
            .collect();
        for (loc, name) in unused {
            self.warn(
                loc,
                format!("sources.{name}"),
                format!("source `{name}` is not ingested by any Bronze table"),
            );
        }
    }

    /// Checks that `r` is a table of one of `layers` that exists; pushes an error otherwise.
    fn check_ref(
        &mut self,
        r: &Located<TableRef>,
        path: &str,
        layers: &[Layer],
        role: &str,
    ) -> bool {
        if !layers.contains(&r.layer) {
            let allowed: Vec<_> = layers.iter().map(|l| l.as_str()).collect();
            self.error(
                r.loc,
                path,
                format!(
                    "{role} reads `{}`, but may only read {} tables",
                    r.value,
                    allowed.join(" or ")
                ),
            );
            return false;
        }
        if self.exists(&r.value) {
            return true;
        }
        let candidates = self.all_tables();
        let help = did_you_mean(&r.to_string(), candidates.iter().map(String::as_str));
        self.error(r.loc, path, format!("unknown table `{}`", r.value))
            .help = help;
        false
    }

    fn exists(&self, r: &TableRef) -> bool {
        let name = &r.name;
        match r.layer {
            Layer::Bronze => self.config.bronze.keys().any(|k| &k.value == name),
            Layer::Silver => self.config.silver.keys().any(|k| &k.value == name),
            Layer::Gold => self.config.gold.keys().any(|k| &k.value == name),
        }
    }

    fn all_tables(&self) -> Vec<String> {
        let c = self.config;
        let bronze = c.bronze.keys().map(|k| format!("bronze.{k}"));
        let silver = c.silver.keys().map(|k| format!("silver.{k}"));
        let gold = c.gold.keys().map(|k| format!("gold.{k}"));
        bronze.chain(silver).chain(gold).collect()
    }

    fn check_silver(&mut self) {
        for (name, table) in &self.config.silver {
            let this = TableRef::new(Layer::Silver, name.value.clone());
            self.key_locs.insert(this.clone(), name.loc);
            let mut inputs = Vec::new();
            let path = format!("silver.{name}");
            if self.check_ref(
                &table.from,
                &format!("{path}.from"),
                &[Layer::Bronze],
                &format!("silver.{name}"),
            ) {
                inputs.push(table.from.value.clone());
            }
            for (lookup, spec) in table.lookups.iter() {
                let lpath = format!("{path}.lookups.{lookup}.table");
                if spec.table.value == this {
                    self.error(
                        spec.table.loc,
                        lpath,
                        format!("`silver.{name}` cannot look itself up"),
                    );
                    continue;
                }
                if self.check_ref(
                    &spec.table,
                    &lpath,
                    &[Layer::Silver],
                    &format!("lookup `{lookup}`"),
                ) {
                    inputs.push(spec.table.value.clone());
                }
            }
            self.check_silver_columns(name, table);
            inputs.sort();
            inputs.dedup();
            self.upstream.insert(this, inputs);
        }
    }

    fn check_silver_columns(&mut self, name: &Located<Name>, table: &SilverTable) {
        let path = format!("silver.{name}");
        if table.columns.is_empty() {
            self.error(
                name.loc,
                format!("{path}.columns"),
                "a Silver table needs at least one column",
            );
        }
        for (column, _) in table.columns.iter() {
            if SILVER_LINEAGE_COLUMNS.contains(&column.as_str()) || column.as_str() == "_rescued" {
                self.error(column.loc, format!("{path}.columns"), format!("`{column}` is an engine column and cannot be defined"))
                    .help = Some("Silver tables carry `_source_file`, `_source_line` and `_bronze_version` automatically".into());
            }
        }
        let written: Vec<&str> = table
            .columns
            .iter()
            .filter(|(_, def)| def.keep)
            .map(|(c, _)| c.as_str())
            .collect();
        let helpers: Vec<&str> = table
            .columns
            .iter()
            .filter(|(_, def)| !def.keep)
            .map(|(c, _)| c.as_str())
            .collect();
        self.check_columns_exist(
            &table.key,
            &written,
            &helpers,
            &format!("{path}.key"),
            "key column",
        );
        self.check_columns_exist(
            &table.partition_by,
            &written,
            &helpers,
            &format!("{path}.partition_by"),
            "partition column",
        );
    }

    fn check_columns_exist(
        &mut self,
        columns: &[Located<ColumnName>],
        written: &[&str],
        helpers: &[&str],
        path: &str,
        what: &str,
    ) {
        for column in columns {
            let c = column.as_str();
            if written.contains(&c) {
                continue;
            }
            if helpers.contains(&c) {
                self.error(
                    column.loc,
                    path,
                    format!("{what} `{c}` has `keep: false`, so it is not written"),
                );
                continue;
            }
            let help = did_you_mean(c, written.iter().copied());
            self.error(
                column.loc,
                path,
                format!("{what} `{c}` is not one of the table's columns"),
            )
            .help = help;
        }
    }

    fn check_gold(&mut self, sql: &dyn SqlAnalyzer, text: &str) {
        for (name, table) in &self.config.gold {
            let this = TableRef::new(Layer::Gold, name.value.clone());
            self.key_locs.insert(this.clone(), name.loc);
            let path = format!("gold.{name}");
            let mut inputs = match (&table.sql, &table.builtin) {
                (Some(_), Some(b)) => {
                    self.error(
                        b.loc,
                        path.clone(),
                        "a Gold table has either `sql` or `builtin`, not both",
                    );
                    Vec::new()
                }
                (None, None) => {
                    self.error(
                        name.loc,
                        path.clone(),
                        "a Gold table needs `sql` or `builtin`",
                    )
                    .help = Some(
                        "e.g. `builtin: campaign_daily`, or `sql: SELECT … FROM silver.events`"
                            .into(),
                    );
                    Vec::new()
                }
                (Some(query), None) => self.sql_inputs(&path, table, query, sql, text),
                (None, Some(_)) => self.builtin_inputs(&path, table),
            };
            self.check_materialization(name, table);
            inputs.sort();
            inputs.dedup();
            if inputs.contains(&this) {
                self.error(name.loc, path, format!("`gold.{name}` reads itself"));
                inputs.retain(|t| t != &this);
            }
            self.upstream.insert(this, inputs);
        }
    }

    fn sql_inputs(
        &mut self,
        path: &str,
        table: &GoldTable,
        query: &Located<String>,
        sql: &dyn SqlAnalyzer,
        text: &str,
    ) -> Vec<TableRef> {
        if !table.inputs.is_empty() {
            let loc = table
                .inputs
                .keys()
                .next()
                .map(|k| k.loc)
                .unwrap_or(query.loc);
            self.error(
                loc,
                format!("{path}.inputs"),
                "`inputs` is for built-in models; a SQL model's inputs are read from its query",
            );
        }
        let refs = match sql.table_references(&query.value) {
            Ok(refs) => refs,
            Err(e) => {
                let loc = sql_position(query, text, e.line, e.column);
                self.error(
                    loc,
                    format!("{path}.sql"),
                    format!("SQL does not parse: {}", e.message),
                );
                return Vec::new();
            }
        };
        let mut inputs = Vec::new();
        for written in refs {
            let loc = find_in_sql(query, text, &written);
            match written.parse::<TableRef>() {
                Ok(r) => {
                    let r = Located::new(r, loc);
                    if self.check_ref(
                        &r,
                        &format!("{path}.sql"),
                        &[Layer::Silver, Layer::Gold],
                        "a Gold model",
                    ) {
                        inputs.push(r.value);
                    }
                }
                Err(_) => {
                    let candidates = self.all_tables();
                    let help = did_you_mean(&written, candidates.iter().map(String::as_str))
                        .or_else(|| {
                            Some("name tables as `layer.table`, e.g. `silver.events`".into())
                        });
                    self.error(
                        loc,
                        format!("{path}.sql"),
                        format!("unknown table `{written}`"),
                    )
                    .help = help;
                }
            }
        }
        inputs
    }

    fn builtin_inputs(&mut self, path: &str, table: &GoldTable) -> Vec<TableRef> {
        let Some(builtin) = &table.builtin else {
            return Vec::new();
        };
        let roles = builtin.inputs();
        let mut inputs = Vec::new();
        for (role, r) in &table.inputs {
            if !roles.contains(&role.as_str()) {
                let help = did_you_mean(role.as_str(), roles.iter().copied())
                    .unwrap_or_else(|| format!("`{}` reads {}", builtin.as_str(), quoted(roles)));
                self.error(
                    role.loc,
                    format!("{path}.inputs"),
                    format!("`{}` has no input `{role}`", builtin.as_str()),
                )
                .help = Some(help);
                continue;
            }
            if self.check_ref(
                r,
                &format!("{path}.inputs.{role}"),
                &[Layer::Silver, Layer::Gold],
                &format!("input `{role}`"),
            ) {
                inputs.push(r.value.clone());
            }
        }
        for role in roles {
            if !table.inputs.keys().any(|k| k.as_str() == *role) {
                self.error(
                    builtin.loc,
                    format!("{path}.inputs"),
                    format!(
                        "`{}` needs its input `{role}` bound to a table",
                        builtin.as_str()
                    ),
                )
                .help = Some(format!("add `inputs: {{ {role}: silver.{role} }}`"));
            }
        }
        inputs
    }

    fn check_materialization(&mut self, name: &Located<Name>, table: &GoldTable) {
        let path = format!("gold.{name}");
        match (table.materialized, &table.date_column) {
            (Materialized::IncrementalByDate, None) => {
                self.error(
                    name.loc,
                    format!("{path}.date_column"),
                    "`materialized: incremental_by_date` needs a `date_column`",
                );
            }
            (Materialized::Full, Some(c)) => {
                self.error(
                    c.loc,
                    format!("{path}.date_column"),
                    "`date_column` is only used with `materialized: incremental_by_date`",
                );
            }
            _ => {}
        }
        if let Some(c) = &table.date_column
            && table.materialized == Materialized::IncrementalByDate
            && !table.key.is_empty()
            && !table.key.contains(c)
        {
            self.error(
                c.loc,
                format!("{path}.date_column"),
                format!("date column `{c}` must be part of the key"),
            )
            .help = Some("dates are replaced whole, so each key belongs to one date".into());
        }
    }

    fn check_attribution(&mut self) {
        let a = &self.config.attribution;
        for (field, value, positive) in [
            ("window_days", &a.window_days, true),
            ("half_life_days", &a.half_life_days, true),
            ("position_first_share", &a.position_first_share, false),
            ("position_last_share", &a.position_last_share, false),
        ] {
            let v = value.value;
            let ok = if positive {
                v.is_finite() && v > 0.0
            } else {
                (0.0..=1.0).contains(&v)
            };
            if !ok {
                let need = if positive {
                    "a number greater than 0"
                } else {
                    "a share between 0 and 1"
                };
                self.error(
                    value.loc,
                    format!("attribution.{field}"),
                    format!("`{field}` must be {need}, not {v}"),
                );
            }
        }
        let shares = a.position_first_share.value + a.position_last_share.value;
        if shares > 1.0 + 1e-12 {
            self.error(
                a.position_last_share.loc,
                "attribution.position_last_share",
                format!("first and last shares add up to {shares}, more than 1"),
            );
        }
        if a.models.is_empty() {
            self.error(
                Loc::default(),
                "attribution.models",
                "at least one attribution model is needed",
            );
        }
        if a.touch_event_types.is_empty() {
            self.error(
                Loc::default(),
                "attribution.touch_event_types",
                "at least one touch event type is needed",
            );
        }
    }

    fn check_lineage(&mut self) {
        if let Some(ol) = &self.config.lineage.openlineage
            && ol.file.is_none()
            && ol.url.is_none()
            && std::env::var_os("OPENLINEAGE_URL").is_none()
        {
            self.warn(
                Loc::default(),
                "lineage.openlineage",
                "OpenLineage is configured with neither `file` nor `url` (and OPENLINEAGE_URL is not set): \
                 events are only kept in the lakehouse, under _system/openlineage",
            );
        }
    }

    /// Topological order (Kahn, ties by layer then name); every cycle is reported.
    fn order(&mut self) -> Vec<TableRef> {
        let mut remaining: BTreeMap<TableRef, BTreeSet<TableRef>> = self
            .upstream
            .iter()
            .map(|(t, ups)| {
                (
                    t.clone(),
                    ups.iter()
                        .filter(|u| self.upstream.contains_key(u))
                        .cloned()
                        .collect(),
                )
            })
            .collect();
        let mut order = Vec::with_capacity(remaining.len());
        loop {
            let ready: Vec<TableRef> = remaining
                .iter()
                .filter(|(_, ups)| ups.is_empty())
                .map(|(t, _)| t.clone())
                .collect();
            if ready.is_empty() {
                break;
            }
            for t in ready {
                remaining.remove(&t);
                for ups in remaining.values_mut() {
                    ups.remove(&t);
                }
                order.push(t);
            }
        }
        if !remaining.is_empty() {
            self.report_cycles(&remaining);
        }
        order
    }

    fn report_cycles(&mut self, remaining: &BTreeMap<TableRef, BTreeSet<TableRef>>) {
        let mut reported: BTreeSet<TableRef> = BTreeSet::new();
        for start in remaining.keys() {
            if reported.contains(start) {
                continue;
            }
            // Walk upstream edges inside the blocked set until a table repeats.
            let mut path = vec![start.clone()];
            let mut current = start.clone();
            while let Some(next) = remaining
                .get(&current)
                .and_then(|ups| ups.iter().next())
                .cloned()
            {
                if let Some(pos) = path.iter().position(|t| t == &next) {
                    let mut cycle: Vec<TableRef> = path[pos..].to_vec();
                    if cycle.iter().any(|t| reported.contains(t)) {
                        break;
                    }
                    // Print in data-flow order, starting from the smallest name.
                    cycle.reverse();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, t)| (*t).clone())
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    let first = cycle[0].clone();
                    let text: Vec<String> = cycle
                        .iter()
                        .chain(std::iter::once(&first))
                        .map(ToString::to_string)
                        .collect();
                    let loc = self.key_locs.get(&first).copied().unwrap_or_default();
                    self.error(
                        loc,
                        first.to_string(),
                        format!("dependency cycle: {}", text.join(" → ")),
                    )
                    .help = Some(
                        "a table cannot depend on itself, directly or through other tables".into(),
                    );
                    reported.extend(cycle);
                    break;
                }
                path.push(next.clone());
                current = next;
            }
        }
    }
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Maps a position inside an embedded SQL text (1-based line and column, as the SQL parser
/// reports them) to the YAML file.
///
/// YAML rewrites a string on its way to the SQL parser: a `|` block drops its indentation, a
/// `>` block, a plain and a quoted scalar fold their line breaks into spaces and drop the
/// indentation of their continuation lines, and quoted scalars have escapes. So the scalar is
/// read again from the source, character by character in its style, checking each against
/// the value, up to the character at the position. When that fails (a `${VAR}` changed the
/// value, or the position is unknown), the result is the value's start.
pub fn sql_position(
    query: &Located<String>,
    text: &str,
    line: Option<u64>,
    column: Option<u64>,
) -> Loc {
    let (Some(line), Some(column)) = (line, column) else {
        return query.loc;
    };
    if !query.loc.is_known() {
        return query.loc;
    }
    let value: Vec<char> = query.value.chars().collect();
    value_offset(&value, line, column)
        .and_then(|offset| source_position(&value, offset, query.loc, text))
        .unwrap_or(query.loc)
}

/// The index in `value` of the character at `line`:`column` (1-based; a column past the end
/// of its line is that line's end, which may be the end of the value).
fn value_offset(value: &[char], line: u64, column: u64) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let column = usize::try_from(column).ok()?.checked_sub(1)?;
    let mut start = 0;
    for _ in 0..line {
        start += value[start..].iter().position(|&c| c == '\n')? + 1;
    }
    let end = value[start..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(value.len(), |p| start + p);
    Some(start.saturating_add(column).min(end))
}

/// A 0-based (line, column) in the source, columns in characters.
type Pos = (usize, usize);

/// How a scalar is written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `|` (literal) or `>` (folded) with its header on line `header`.
    Block { header: usize, folded: bool },
    /// Unquoted.
    Plain,
    /// In `"` or `'` quotes.
    Quoted(char),
}

/// Where the character `offset` of `value` (a scalar starting at `start`) is in `text`.
fn source_position(value: &[char], offset: usize, start: Loc, text: &str) -> Option<Loc> {
    // Past the end (the parser ran out of query): the last character written.
    let target = if offset < value.len() {
        offset
    } else {
        value.iter().rposition(|c| !c.is_whitespace())?
    };
    let lines: Vec<Vec<char>> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).chars().collect())
        .collect();
    let at: Pos = (
        usize::try_from(start.line).ok()?.checked_sub(1)?,
        usize::try_from(start.column).ok()?.checked_sub(1)?,
    );
    let limit = target + 1;
    let decoded = match style_at(&lines, at)? {
        Style::Block { header, folded } => decode_block(&lines, header, at.1, folded, limit),
        Style::Plain => decode_plain(&lines, at, limit),
        Style::Quoted(quote) => decode_quoted(&lines, at, quote, limit),
    };
    if decoded.len() < limit || decoded[..limit].iter().zip(value).any(|((c, _), v)| c != v) {
        return None;
    }
    let (line, column) = decoded[target].1;
    // A folded line break is at the end of its line: point at the line's last character.
    let last = lines[line].len().saturating_sub(1);
    Some(Loc::new(line as u64 + 1, column.min(last) as u64 + 1))
}

/// The style of the scalar starting at `at` (a block scalar starts on a line below its
/// header, possibly after blank lines, at its indentation).
fn style_at(lines: &[Vec<char>], (line, column): Pos) -> Option<Style> {
    let row = lines.get(line)?;
    let first = *row.get(column)?;
    if row[..column].iter().all(|&c| c == ' ')
        && let Some(header) = (0..line).rev().find(|&h| !is_blank(&lines[h]))
        && let Some(folded) = block_header(&lines[header])
    {
        return Some(Style::Block { header, folded });
    }
    Some(match first {
        '"' | '\'' => Style::Quoted(first),
        _ => Style::Plain,
    })
}

/// Whether a source line holds only whitespace.
fn is_blank(line: &[char]) -> bool {
    line.iter().all(|&c| matches!(c, ' ' | '\t'))
}

/// Whether `line` ends with a block scalar header (`|`, `>-`, `|2`, … before any comment):
/// `Some(true)` for a folded one, `Some(false)` for a literal one.
fn block_header(line: &[char]) -> Option<bool> {
    let line: String = line.iter().collect();
    let indicator = line
        .split_whitespace()
        .take_while(|t| !t.starts_with('#'))
        .last()?;
    let folded = match indicator.chars().next()? {
        '|' => false,
        '>' => true,
        _ => return None,
    };
    let rest = &indicator[1..];
    (rest.len() <= 2 && rest.chars().all(|c| matches!(c, '-' | '+' | '1'..='9'))).then_some(folded)
}

/// The first `limit` characters of a block scalar (header on line `header`, content indented
/// by `indent`), each with where it is written; line feeds and folded spaces are at the end
/// of the line they end.
fn decode_block(
    lines: &[Vec<char>],
    header: usize,
    indent: usize,
    folded: bool,
    limit: usize,
) -> Vec<(char, Pos)> {
    let mut out = Vec::new();
    // The last content line (whether it is more indented), and the empty lines since.
    let mut previous: Option<(bool, usize)> = None;
    let mut empty = Vec::new();
    for (i, row) in lines.iter().enumerate().skip(header + 1) {
        if out.len() >= limit {
            break;
        }
        let content: &[char] = if row.len() > indent && row[..indent].iter().all(|&c| c == ' ') {
            &row[indent..]
        } else if is_blank(row) {
            &[]
        } else {
            break; // less indented: the block has ended
        };
        if !folded {
            out.extend(
                content
                    .iter()
                    .enumerate()
                    .map(|(j, &c)| (c, (i, indent + j))),
            );
            out.push(('\n', (i, row.len())));
            continue;
        }
        if content.is_empty() {
            empty.push(i);
            continue;
        }
        // Folding: a line break between two text lines is a space (or, with empty lines
        // between, one line feed per empty line); next to a more indented line it stays.
        let spaced = matches!(content[0], ' ' | '\t');
        match previous {
            Some((false, p)) if !spaced && empty.is_empty() => out.push((' ', (p, lines[p].len()))),
            Some((false, _)) if !spaced => {}
            Some((_, p)) => out.push(('\n', (p, lines[p].len()))),
            None => {}
        }
        out.extend(empty.drain(..).map(|e| ('\n', (e, 0))));
        out.extend(
            content
                .iter()
                .enumerate()
                .map(|(j, &c)| (c, (i, indent + j))),
        );
        previous = Some((spaced, i));
    }
    if let Some((_, p)) = previous {
        out.push(('\n', (p, lines[p].len())));
    }
    out
}

/// The first `limit` characters of a plain scalar starting at `start`: each line without
/// its indentation and trailing whitespace, line breaks folded into a space (or one line
/// feed per empty line between), up to a comment.
fn decode_plain(lines: &[Vec<char>], (line, column): Pos, limit: usize) -> Vec<(char, Pos)> {
    let mut out = Vec::new();
    let mut previous: Option<usize> = None;
    let mut empty = Vec::new();
    for (i, row) in lines.iter().enumerate().skip(line) {
        if out.len() >= limit {
            break;
        }
        let from = if i == line {
            column
        } else {
            row.iter()
                .position(|&c| !matches!(c, ' ' | '\t'))
                .unwrap_or(row.len())
        };
        let comment = (from..row.len())
            .find(|&j| row[j] == '#' && (j == 0 || matches!(row[j - 1], ' ' | '\t')));
        let mut end = comment.unwrap_or(row.len());
        while end > from && matches!(row[end - 1], ' ' | '\t') {
            end -= 1;
        }
        if end == from {
            if comment.is_some() {
                break;
            }
            empty.push(i);
            continue;
        }
        if let Some(p) = previous {
            if empty.is_empty() {
                out.push((' ', (p, lines[p].len())));
            } else {
                out.extend(empty.drain(..).map(|e| ('\n', (e, 0))));
            }
        }
        out.extend((from..end).map(|j| (row[j], (i, j))));
        previous = Some(i);
        if comment.is_some() {
            break;
        }
    }
    out
}

/// The first `limit` characters of a scalar quoted with `quote` (opening at `start`): an
/// escape (`\"`, `\n`, `''`, …) is one character, written where it starts; line breaks fold
/// as in a plain scalar, except after `\` at the end of a line, where they vanish.
fn decode_quoted(
    lines: &[Vec<char>],
    (line, column): Pos,
    quote: char,
    limit: usize,
) -> Vec<(char, Pos)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (line, column + 1);
    while let Some(row) = lines.get(i) {
        // Characters up to `kept` stay; unescaped whitespace after them ends the line.
        let mut kept = out.len();
        let (mut closed, mut escaped_break) = (false, false);
        while j < row.len() {
            let c = row[j];
            if c == quote {
                if quote == '\'' && row.get(j + 1) == Some(&'\'') {
                    out.push(('\'', (i, j)));
                    j += 2;
                    kept = out.len();
                    continue;
                }
                closed = true;
                break;
            }
            if c == '\\' && quote == '"' {
                if j + 1 == row.len() {
                    escaped_break = true;
                    break;
                }
                let Some((unescaped, len)) = unescape(&row[j + 1..]) else {
                    return out;
                };
                out.push((unescaped, (i, j)));
                j += 1 + len;
                kept = out.len();
                continue;
            }
            out.push((c, (i, j)));
            j += 1;
            if !matches!(c, ' ' | '\t') {
                kept = out.len();
            }
        }
        if closed {
            break;
        }
        if !escaped_break {
            out.truncate(kept);
        }
        if out.len() >= limit {
            break;
        }
        let mut next = i + 1;
        let mut empty = Vec::new();
        while lines.get(next).is_some_and(|l| is_blank(l)) {
            empty.push(next);
            next += 1;
        }
        if !empty.is_empty() {
            out.extend(empty.iter().map(|&e| ('\n', (e, 0))));
        } else if !escaped_break {
            out.push((' ', (i, row.len())));
        }
        i = next;
        j = lines.get(i).map_or(0, |r| {
            r.iter()
                .position(|&c| !matches!(c, ' ' | '\t'))
                .unwrap_or(r.len())
        });
    }
    out
}

/// The character a double-quoted escape stands for (`rest` follows the `\`), and how many
/// characters of `rest` it takes.
fn unescape(rest: &[char]) -> Option<(char, usize)> {
    let hex = |digits: usize| {
        let code: String = rest.get(1..=digits)?.iter().collect();
        let c = char::from_u32(u32::from_str_radix(&code, 16).ok()?)?;
        Some((c, 1 + digits))
    };
    let c = match rest.first()? {
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        't' | '\t' => '\t',
        'n' => '\n',
        'v' => '\u{b}',
        'f' => '\u{c}',
        'r' => '\r',
        'e' => '\u{1b}',
        'N' => '\u{85}',
        '_' => '\u{a0}',
        'L' => '\u{2028}',
        'P' => '\u{2029}',
        'x' => return hex(2),
        'u' => return hex(4),
        'U' => return hex(8),
        &c @ (' ' | '"' | '/' | '\\') => c,
        _ => return None,
    };
    Some((c, 1))
}

/// Where `needle` (a table name as written) first appears in the SQL, as a YAML position.
fn find_in_sql(query: &Located<String>, text: &str, needle: &str) -> Loc {
    for (i, line) in query.value.lines().enumerate() {
        if let Some(pos) = line.to_ascii_lowercase().find(&needle.to_ascii_lowercase()) {
            let column = line[..pos].chars().count() as u64 + 1;
            return sql_position(query, text, Some(i as u64 + 1), Some(column));
        }
    }
    query.loc
}
