//! OpenLineage run events (spec 2-0-2): START when a table run begins, COMPLETE or FAIL when
//! it ends, with the datasets read and written, their schemas, column lineage, row counts,
//! versions, and the expectation results as data-quality assertions.
//!
//! Events of a run are always kept in the lakehouse, `{root}/_system/openlineage/<run>.ndjson`
//! (one object per run, written when the run ends), appended to a local NDJSON file when
//! `lineage.openlineage.file` is set, and POSTed to an HTTP endpoint when `url` (or the
//! `OPENLINEAGE_URL` environment variable) is set. An endpoint that fails never fails the
//! data run: a warning is logged and the run stops posting; the events stay in the files.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use deltalake::datafusion::object_store::ObjectStoreExt as _;
use medallion_config::{Config, Layer, TableRef};
use serde_json::{Value, json};
use url::Url;

use crate::column_lineage::{ColumnLineage, Transform};
use crate::runlog::RunRecord;
use crate::storage::redacted;
use crate::{Pipeline, RunContext};

/// The spec the events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Who produced the events.
pub const PRODUCER: &str = env!("CARGO_PKG_REPOSITORY");

const FACETS: &str = "https://openlineage.io/spec/facets";

/// A facet's `_producer` and `_schemaURL`, then its fields.
fn facet(file: &str, name: &str, fields: Value) -> Value {
    let mut facet = json!({
        "_producer": PRODUCER,
        "_schemaURL": format!("{FACETS}/{file}.json#/$defs/{name}"),
    });
    if let (Some(f), Value::Object(fields)) = (facet.as_object_mut(), fields) {
        f.extend(fields);
    }
    facet
}

/// The storage facet of a Delta table.
fn delta_storage() -> Value {
    facet(
        "1-0-1/StorageDatasetFacet",
        "StorageDatasetFacet",
        json!({ "storageLayer": "delta", "fileFormat": "parquet" }),
    )
}

/// The output-statistics facet of `rows` rows written.
fn row_count(rows: i64) -> Value {
    facet(
        "1-0-2/OutputStatisticsOutputDatasetFacet",
        "OutputStatisticsOutputDatasetFacet",
        json!({ "rowCount": rows }),
    )
}

/// A deterministic UUID (version 8) for a name: the same run and table always get the same
/// OpenLineage run id, so START and COMPLETE pair up and the run log can be matched.
pub fn run_uuid(name: &str) -> uuid::Uuid {
    let hash = twox_hash::XxHash3_128::oneshot(name.as_bytes());
    uuid::Builder::from_custom_bytes(hash.to_be_bytes()).into_uuid()
}

/// The OpenLineage run id of one table run.
pub fn table_run_id(run_id: &str, table: &str) -> uuid::Uuid {
    run_uuid(&format!("{run_id}/{table}"))
}

/// A dataset's OpenLineage identity from its location (the naming spec: `file` and the
/// absolute path locally; `s3://bucket` and the key prefix on S3).
pub fn dataset_id(url: &Url) -> (String, String) {
    let path = url.path().trim_end_matches('/');
    match url.scheme() {
        "file" => ("file".to_string(), path.to_string()),
        scheme => {
            let host = url.host_str().unwrap_or_default();
            let namespace = match url.port() {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            };
            (namespace, path.trim_start_matches('/').to_string())
        }
    }
}

/// What the end of a table run adds to its events besides its run record.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The output table's columns and types.
    pub schema: Vec<(String, String)>,
    /// Silver expectations: (rule, predicate, action, rows failing).
    pub expectations: Vec<(String, String, String, i64)>,
}

/// Where events go, and what was sent.
#[derive(Debug)]
pub struct Emitter {
    namespace: String,
    pipeline_job: String,
    file: Option<PathBuf>,
    endpoint: Option<Url>,
    api_key: Option<String>,
    timeout: Duration,
    client: Option<reqwest::Client>,
    posting: bool,
    lineage: ColumnLineage,
    /// Every event of the run, in order.
    pub events: Vec<Value>,
    /// Events the endpoint took.
    pub posted: usize,
}

impl Emitter {
    /// The emitter the configuration asks for (`None`: OpenLineage is not configured).
    pub fn new(pipeline: &Pipeline) -> Option<Self> {
        let config = pipeline.config.lineage.openlineage.as_ref()?;
        let url = config
            .url
            .as_ref()
            .map(|u| u.value.clone())
            .or_else(|| std::env::var("OPENLINEAGE_URL").ok())
            .filter(|u| !u.trim().is_empty());
        let endpoint = url.and_then(|u| match Url::parse(u.trim()) {
            Ok(mut url) => {
                // The OpenLineage HTTP convention: a bare server URL takes `api/v1/lineage`.
                if url.path().is_empty() || url.path() == "/" {
                    url.set_path("/api/v1/lineage");
                }
                Some(url)
            }
            Err(e) => {
                tracing::warn!("OpenLineage endpoint is not a URL ({e}); events are not posted");
                None
            }
        });
        let file = config.file.as_ref().map(|f| {
            let text = f.value.as_str();
            Url::parse(text)
                .ok()
                .filter(|u| u.scheme() == "file")
                .and_then(|u| u.to_file_path().ok())
                .unwrap_or_else(|| PathBuf::from(text))
        });
        let name = pipeline.config.pipeline.value.as_str().to_string();
        Some(Self {
            namespace: config.namespace.clone().unwrap_or_else(|| name.clone()),
            pipeline_job: name,
            file,
            endpoint,
            api_key: std::env::var("OPENLINEAGE_API_KEY").ok(),
            timeout: Duration::from_secs(u64::from(config.timeout_secs.max(1))),
            client: None,
            posting: true,
            lineage: crate::expressions::column_lineage(&pipeline.config, &pipeline.dag),
            events: Vec::new(),
            posted: 0,
        })
    }

    /// The START event of a table run.
    pub async fn start(&mut self, pipeline: &Pipeline, ctx: &RunContext, table: &TableRef) {
        let event = self.event(pipeline, ctx, table, "START", Utc::now());
        self.emit(event).await;
    }

    /// The COMPLETE or FAIL event of a table run, from its run record.
    pub async fn finish(
        &mut self,
        pipeline: &Pipeline,
        ctx: &RunContext,
        table: &TableRef,
        record: &RunRecord,
        outcome: &Outcome,
    ) {
        let failed = record.status == "failed";
        let kind = if failed { "FAIL" } else { "COMPLETE" };
        let mut event = self.event(pipeline, ctx, table, kind, record.finished_at);
        if let Some(error) = record.error.as_ref().filter(|_| failed) {
            event["run"]["facets"]["errorMessage"] = facet(
                "1-0-1/ErrorMessageRunFacet",
                "ErrorMessageRunFacet",
                json!({ "message": error, "programmingLanguage": "Rust" }),
            );
        }
        event["inputs"] = Value::Array(self.inputs(pipeline, table, record, outcome));
        event["outputs"] = Value::Array(self.outputs(pipeline, table, record, outcome));
        self.emit(event).await;
    }

    fn event(
        &self,
        pipeline: &Pipeline,
        ctx: &RunContext,
        table: &TableRef,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Value {
        let mut job_facets = json!({
            "jobType": facet("2-0-4/JobTypeJobFacet", "JobTypeJobFacet", json!({
                "processingType": "BATCH", "integration": "MEDALLION", "jobType": "TABLE",
            })),
        });
        if let Some(description) = description(&pipeline.config, table) {
            job_facets["documentation"] = facet(
                "1-1-0/DocumentationJobFacet",
                "DocumentationJobFacet",
                json!({ "description": description }),
            );
        }
        if let Some(sql) = pipeline
            .config
            .gold_table(&table.name)
            .filter(|_| table.layer == Layer::Gold)
            .and_then(|g| g.sql.as_ref())
        {
            job_facets["sql"] = facet(
                "1-1-0/SQLJobFacet",
                "SQLJobFacet",
                json!({ "query": sql.value, "dialect": "datafusion" }),
            );
        }
        json!({
            "eventType": kind,
            "eventTime": at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {
                "runId": table_run_id(&ctx.run_id, &table.to_string()).to_string(),
                "facets": {
                    "parent": facet("1-2-0/ParentRunFacet", "ParentRunFacet", json!({
                        "run": { "runId": run_uuid(&ctx.run_id).to_string() },
                        "job": { "namespace": self.namespace, "name": self.pipeline_job },
                    })),
                    "processing_engine": facet("1-1-1/ProcessingEngineRunFacet", "ProcessingEngineRunFacet", json!({
                        "version": crate::run::ENGINE_VERSION,
                        "name": "medallion",
                        "openlineageAdapterVersion": crate::run::ENGINE_VERSION,
                    })),
                },
            },
            "job": { "namespace": self.namespace, "name": table.to_string(), "facets": job_facets },
            "inputs": [],
            "outputs": [],
        })
    }

    /// The datasets a run read, with the versions read and, for Silver, the expectations.
    fn inputs(
        &self,
        pipeline: &Pipeline,
        table: &TableRef,
        record: &RunRecord,
        outcome: &Outcome,
    ) -> Vec<Value> {
        let read: Value = serde_json::from_str(&record.inputs).unwrap_or(Value::Null);
        let mut out = Vec::new();
        if table.layer == Layer::Bronze {
            let folder = pipeline
                .dag
                .source_of(table)
                .and_then(|s| pipeline.config.source(s).map(|src| (s, src)))
                .map(|(name, s)| {
                    s.path
                        .as_ref()
                        .map_or_else(|| format!("{name}/"), |p| p.value.clone())
                });
            if let Some(folder) = folder {
                let (namespace, name) = dataset_id(&pipeline.locations.source(&folder));
                let files = read["files"].as_array().map_or(0, Vec::len);
                let assertion = json!({
                    "assertion": "every line is a record of the source's format",
                    "success": record.rows_quarantined == 0,
                    "name": "parseable",
                    "severity": "quarantine",
                    "actual": format!("{} of {} lines quarantined", record.rows_quarantined, record.rows_read),
                });
                out.push(json!({
                    "namespace": namespace, "name": name,
                    "facets": {
                        "dataSource": facet("1-0-1/DatasourceDatasetFacet", "DatasourceDatasetFacet", json!({
                            "name": format!("landing:{folder}"),
                        })),
                    },
                    "inputFacets": {
                        "dataQualityAssertions": facet("1-1-0/DataQualityAssertionsDatasetFacet", "DataQualityAssertionsDatasetFacet", json!({ "assertions": [assertion] })),
                        "dataQualityMetrics": facet("1-0-3/DataQualityMetricsInputDatasetFacet", "DataQualityMetricsInputDatasetFacet", json!({
                            "rowCount": record.rows_read, "fileCount": files, "columnMetrics": {},
                        })),
                    },
                }));
            }
            return out;
        }
        for (input, versions) in read.as_object().into_iter().flatten() {
            let Ok(input_ref) = input.parse::<TableRef>() else {
                continue;
            };
            let (namespace, name) = dataset_id(&pipeline.locations.table(&input_ref));
            let mut dataset = json!({ "namespace": namespace, "name": name, "facets": {} });
            if let Some(v) = versions["to_version"].as_i64() {
                dataset["facets"]["version"] = facet(
                    "1-0-1/DatasetVersionDatasetFacet",
                    "DatasetVersionDatasetFacet",
                    json!({ "datasetVersion": v.to_string() }),
                );
            }
            let main_input = pipeline
                .config
                .silver_table(&table.name)
                .is_some_and(|s| table.layer == Layer::Silver && s.from.value == input_ref);
            if main_input && !outcome.expectations.is_empty() {
                let assertions: Vec<Value> = outcome
                    .expectations
                    .iter()
                    .map(|(rule, expr, action, failing)| {
                        json!({
                            "assertion": expr,
                            "success": *failing == 0,
                            "name": rule,
                            "severity": action,
                            "actual": format!("{failing} rows failed"),
                            "expected": "0 rows failed",
                        })
                    })
                    .collect();
                dataset["inputFacets"] = json!({
                    "dataQualityAssertions": facet("1-1-0/DataQualityAssertionsDatasetFacet", "DataQualityAssertionsDatasetFacet", json!({ "assertions": assertions })),
                    "dataQualityMetrics": facet("1-0-3/DataQualityMetricsInputDatasetFacet", "DataQualityMetricsInputDatasetFacet", json!({
                        "rowCount": record.rows_read, "columnMetrics": {},
                    })),
                });
            }
            out.push(dataset);
        }
        out
    }

    /// The tables a run wrote: the table, with its schema, column lineage, version and rows
    /// written; and its quarantine when rows went there.
    fn outputs(
        &self,
        pipeline: &Pipeline,
        table: &TableRef,
        record: &RunRecord,
        outcome: &Outcome,
    ) -> Vec<Value> {
        let (namespace, name) = dataset_id(&pipeline.locations.table(table));
        let mut facets = json!({
            "storage": delta_storage(),
        });
        if !outcome.schema.is_empty() {
            let fields: Vec<Value> = outcome
                .schema
                .iter()
                .enumerate()
                .map(|(i, (n, t))| json!({ "name": n, "type": t, "ordinal_position": i + 1 }))
                .collect();
            facets["schema"] = facet(
                "1-2-0/SchemaDatasetFacet",
                "SchemaDatasetFacet",
                json!({ "fields": fields }),
            );
        }
        if let Some(columns) = self.lineage.get(&table.to_string()) {
            let mut fields = serde_json::Map::new();
            for (column, origins) in columns {
                let inputs: Vec<Value> = origins
                    .iter()
                    .map(|((from, field), t)| {
                        let (namespace, name) = origin_dataset(pipeline, from);
                        json!({
                            "namespace": namespace, "name": name, "field": field,
                            "transformations": [{
                                "type": "DIRECT",
                                "subtype": match t {
                                    Transform::Identity => "IDENTITY",
                                    Transform::Transformation => "TRANSFORMATION",
                                    Transform::Aggregation => "AGGREGATION",
                                },
                            }],
                        })
                    })
                    .collect();
                if !inputs.is_empty() {
                    fields.insert(column.clone(), json!({ "inputFields": inputs }));
                }
            }
            facets["columnLineage"] = facet(
                "1-2-0/ColumnLineageDatasetFacet",
                "ColumnLineageDatasetFacet",
                json!({ "fields": fields }),
            );
        }
        if let Some(v) = record.output_version {
            facets["version"] = facet(
                "1-0-1/DatasetVersionDatasetFacet",
                "DatasetVersionDatasetFacet",
                json!({ "datasetVersion": v.to_string() }),
            );
        }
        let mut out = vec![json!({
            "namespace": namespace, "name": name, "facets": facets,
            "outputFacets": {
                "outputStatistics": row_count(record.rows_written),
            },
        })];
        if record.rows_quarantined > 0 {
            let (namespace, name) = dataset_id(&pipeline.locations.quarantine(table));
            out.push(json!({
                "namespace": namespace, "name": name,
                "facets": {
                    "storage": delta_storage(),
                },
                "outputFacets": {
                    "outputStatistics": row_count(record.rows_quarantined),
                },
            }));
        }
        out
    }

    async fn emit(&mut self, event: Value) {
        let line = event.to_string();
        if let Some(path) = &self.file
            && let Err(e) = append_line(path, &line)
        {
            tracing::warn!(file = %path.display(), "OpenLineage event not written to the file: {e}");
        }
        if self.posting
            && let Some(endpoint) = self.endpoint.clone()
        {
            match self.post(&endpoint, line).await {
                Ok(()) => self.posted += 1,
                Err(e) => {
                    // Never fails the data run: the events stay in the files.
                    self.posting = false;
                    tracing::warn!(
                        endpoint = %redacted(&endpoint),
                        "OpenLineage endpoint did not take the event ({e}); this run posts no more \
                         events, all of them are kept in _system/openlineage{}",
                        self.file.as_ref().map(|f| format!(" and {}", f.display())).unwrap_or_default()
                    );
                }
            }
        }
        self.events.push(event);
    }

    async fn post(&mut self, endpoint: &Url, body: String) -> Result<(), String> {
        if self.client.is_none() {
            self.client = Some(
                reqwest::Client::builder()
                    .timeout(self.timeout)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let client = self.client.as_ref().expect("set above");
        let mut request = client
            .post(endpoint.clone())
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// Writes the run's events to `{root}/_system/openlineage/<run>.ndjson`.
    pub async fn close(self, pipeline: &Pipeline, ctx: &RunContext) -> crate::Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for e in &self.events {
            text.push_str(&e.to_string());
            text.push('\n');
        }
        let root = pipeline.locations.root();
        let store = crate::table::store_for(root)?;
        let path = deltalake::Path::from(format!("_system/openlineage/{}.ndjson", ctx.run_id));
        store
            .put(&path, bytes::Bytes::from(text).into())
            .await
            .map_err(|e| crate::table::storage_error(root, e))?;
        Ok(())
    }
}

/// The dataset of a column origin: a table, or a source's landing folder.
fn origin_dataset(pipeline: &Pipeline, origin: &str) -> (String, String) {
    if let Some(folder) = origin.strip_prefix("landing:") {
        return dataset_id(&pipeline.locations.source(folder));
    }
    match origin.parse::<TableRef>() {
        Ok(t) => dataset_id(&pipeline.locations.table(&t)),
        Err(_) => ("medallion".to_string(), origin.to_string()),
    }
}

fn description(config: &Config, table: &TableRef) -> Option<String> {
    match table.layer {
        Layer::Gold => config.gold_table(&table.name)?.description.clone(),
        Layer::Silver => config.silver_table(&table.name)?.description.clone(),
        Layer::Bronze => None,
    }
}

fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// The expectations of a Silver table with the rows failing each, for [`Outcome`].
pub fn expectations(
    config: &Config,
    table: &TableRef,
    failing: &BTreeMap<String, u64>,
) -> Vec<(String, String, String, i64)> {
    let Some(def) = config
        .silver_table(&table.name)
        .filter(|_| table.layer == Layer::Silver)
    else {
        return Vec::new();
    };
    def.expectations
        .iter()
        .map(|(rule, e)| {
            (
                rule.as_str().to_string(),
                e.expr.value.clone(),
                format!("{:?}", e.action.value).to_lowercase(),
                failing
                    .get(rule.as_str())
                    .map_or(0, |n| crate::runlog::count(*n)),
            )
        })
        .collect()
}
