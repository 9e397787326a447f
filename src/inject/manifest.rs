//! `writ inject` over a stream of manifests: split the YAML stream into documents,
//! inject the workloads (typed `k8s-openapi` objects, `kind: List` items included),
//! then rewire the Services of the same input. A document that is not changed is
//! printed as it was read, byte for byte (comments, key order, quoting, unknown kinds
//! all kept). A changed document is printed from its typed object: its comments,
//! key order, quoting style and any field unknown to the Kubernetes API version
//! `k8s-openapi` was built for are not kept.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ANNOTATION_CONFIG, DEFAULT_CONFIG_MAP, Fronted, InjectError, Options, Outcome};

/// The manifests with writ injected, and what could not be rewired.
#[derive(Debug)]
pub struct Injected {
    /// The whole output stream.
    pub output: String,
    /// One line per thing the operator must look at (a Service that bypasses writ).
    pub warnings: Vec<String>,
    /// How many pod templates got writ.
    pub injected: usize,
}

/// Input that cannot be injected; nothing is printed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A document that is not YAML.
    #[error("document {doc} (line {line}): {message}")]
    Yaml {
        doc: usize,
        line: usize,
        message: String,
    },
    /// A workload that asked for writ and cannot get it.
    #[error("{what}: {source}")]
    Inject { what: String, source: InjectError },
    /// A changed document that cannot be printed back.
    #[error("{what}: cannot print: {message}")]
    Emit { what: String, message: String },
}

/// One document of the stream, as read.
struct Doc<'a> {
    text: &'a str,
    /// The line (1-based) it starts on.
    line: usize,
    value: Option<Value>,
    changed: bool,
}

/// A pod template writ was injected into, for Service rewiring.
struct Target {
    what: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    fronted: Fronted,
}

/// Injects writ into every selected workload of a multi-document YAML stream.
pub fn inject(input: &str, opts: &Options) -> Result<Injected, ManifestError> {
    let mut docs = split(input);
    for (i, doc) in docs.iter_mut().enumerate() {
        if has_content(doc.text) {
            let value: Value =
                serde_saphyr::from_str(doc.text).map_err(|e| ManifestError::Yaml {
                    doc: i + 1,
                    line: doc.line,
                    message: e.to_string(),
                })?;
            doc.value = (!value.is_null()).then_some(value);
        }
    }
    let graces = shutdown_graces(&docs);
    let mut targets = Vec::new();
    let mut warnings = Vec::new();
    for doc in docs.iter_mut() {
        if let Some(v) = doc.value.as_mut() {
            doc.changed |= for_each_item(v, &mut |item| {
                inject_item(item, opts, &graces, &mut targets, &mut warnings)
            })?;
        }
    }
    for doc in docs.iter_mut() {
        if let Some(v) = doc.value.as_mut() {
            doc.changed |=
                for_each_item(v, &mut |item| rewire_service(item, &targets, &mut warnings))?;
        }
    }
    let mut output = String::with_capacity(input.len() + 4096 * targets.len());
    for doc in &docs {
        match (&doc.value, doc.changed) {
            (Some(v), true) => {
                let head = head(doc.text);
                if doc.text.starts_with("---") && !head.starts_with("---") {
                    output.push_str("---\n");
                }
                output.push_str(head);
                let yaml = serde_saphyr::to_string(v).map_err(|e| ManifestError::Emit {
                    what: describe(v),
                    message: e.to_string(),
                })?;
                output.push_str(&yaml);
                if !yaml.ends_with('\n') {
                    output.push('\n');
                }
            }
            _ => output.push_str(doc.text),
        }
    }
    Ok(Injected {
        output,
        warnings,
        injected: targets.len(),
    })
}

/// Splits a YAML stream at `---` lines (column 0, alone or followed by a space or a
/// comment: a marker line is a document boundary even inside a block scalar, per the
/// YAML spec). Each document keeps its own marker line, so concatenating the texts
/// gives the input back exactly.
fn split(input: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (n, line) in input.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_marker && offset > start {
            docs.push(doc(&input[start..offset], start_line));
            start = offset;
            start_line = n + 1;
        }
        offset += line.len();
    }
    if offset > start || docs.is_empty() {
        docs.push(doc(&input[start..], start_line));
    }
    docs
}

fn doc(text: &str, line: usize) -> Doc<'_> {
    Doc {
        text,
        line,
        value: None,
        changed: false,
    }
}

/// The marker line and the comment lines that open a document: kept when the
/// rest of it is printed anew (they usually say what the document is).
fn head(text: &str) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        let marker = end == 0 && (t == "---" || line.starts_with("--- #"));
        if !(marker || t.is_empty() || t.starts_with('#')) {
            break;
        }
        end += line.len();
    }
    &text[..end]
}

/// Whether a document has anything but markers, comments and blank lines.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || l.starts_with("--- #"))
    })
}

/// Runs `f` on the object, or on each item of a `kind: List` (or `FooList`).
fn for_each_item(
    value: &mut Value,
    f: &mut dyn FnMut(&mut Value) -> Result<bool, ManifestError>,
) -> Result<bool, ManifestError> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"));
    match value.get_mut("items").and_then(Value::as_array_mut) {
        Some(items) if is_list => {
            let mut changed = false;
            for item in items {
                changed |= f(item)?;
            }
            Ok(changed)
        }
        _ => f(value),
    }
}

fn kind_of(v: &Value) -> (&str, &str) {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    (s("apiVersion"), s("kind"))
}

/// `Kind/namespace/name` (or `Kind/name`) for messages.
fn describe(v: &Value) -> String {
    let (_, kind) = kind_of(v);
    let meta = v.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let name = field("name").or(field("generateName")).unwrap_or("?");
    match field("namespace") {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// `shutdown_grace` of each ConfigMap in the input that holds a `writ.yaml`.
fn shutdown_graces(docs: &[Doc<'_>]) -> BTreeMap<String, Duration> {
    #[derive(serde::Deserialize)]
    struct Grace {
        shutdown_grace: Option<String>,
    }
    let mut out = BTreeMap::new();
    for v in docs.iter().filter_map(|d| d.value.as_ref()) {
        let items: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
            Some(items) => items.iter().collect(),
            None => vec![v],
        };
        for item in items {
            if kind_of(item) != ("v1", "ConfigMap") {
                continue;
            }
            let Ok(cm) = serde_json::from_value::<ConfigMap>(item.clone()) else {
                continue;
            };
            let (Some(name), Some(policy)) = (
                cm.metadata.name,
                cm.data.as_ref().and_then(|d| d.get("writ.yaml")),
            ) else {
                continue;
            };
            // Only the one key is read; `writ check` validates the rest.
            let grace = serde_saphyr::from_str::<Value>(policy)
                .ok()
                .and_then(|p| serde_json::from_value::<Grace>(p).ok())
                .and_then(|g| g.shutdown_grace)
                .and_then(|g| humantime::parse_duration(&g).ok());
            if let Some(g) = grace {
                out.insert(name, g);
            }
        }
    }
    out
}

type PodOf<T> = for<'a> fn(&'a mut T) -> Option<(&'a mut ObjectMeta, &'a mut PodSpec)>;

fn template(t: &mut PodTemplateSpec) -> Option<(&mut ObjectMeta, &mut PodSpec)> {
    let PodTemplateSpec { metadata, spec } = t;
    let spec = spec.as_mut()?;
    Some((metadata.get_or_insert_with(Default::default), spec))
}

/// Injects one object if it is a workload; true when it changed.
fn inject_item(
    item: &mut Value,
    opts: &Options,
    graces: &BTreeMap<String, Duration>,
    targets: &mut Vec<Target>,
    warnings: &mut Vec<String>,
) -> Result<bool, ManifestError> {
    let cx = Cx {
        opts,
        graces,
        targets,
        warnings,
    };
    match kind_of(item) {
        ("apps/v1", "Deployment") => {
            cx.typed::<Deployment>(item, |d| template(&mut d.spec.template))
        }
        ("apps/v1", "StatefulSet") => {
            cx.typed::<StatefulSet>(item, |d| template(&mut d.spec.template))
        }
        ("apps/v1", "DaemonSet") => cx.typed::<DaemonSet>(item, |d| template(&mut d.spec.template)),
        ("apps/v1", "ReplicaSet") => {
            cx.typed::<ReplicaSet>(item, |d| template(d.spec.template.as_mut()?))
        }
        ("batch/v1", "Job") => cx.typed::<Job>(item, |d| template(&mut d.spec.as_mut()?.template)),
        ("batch/v1", "CronJob") => cx.typed::<CronJob>(item, |d| {
            template(&mut d.spec.job_template.spec.as_mut()?.template)
        }),
        ("v1", "Pod") => cx.typed::<Pod>(item, |p| {
            let Pod { metadata, spec, .. } = p;
            Some((metadata, spec.as_mut()?))
        }),
        _ => Ok(false),
    }
}

struct Cx<'a> {
    opts: &'a Options,
    graces: &'a BTreeMap<String, Duration>,
    targets: &'a mut Vec<Target>,
    warnings: &'a mut Vec<String>,
}

impl Cx<'_> {
    fn typed<T: DeserializeOwned + Serialize>(
        self,
        item: &mut Value,
        pod_of: PodOf<T>,
    ) -> Result<bool, ManifestError> {
        let what = describe(item);
        let namespace = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        // Not a valid object of its kind: the API server will say so on apply; it is
        // printed as read, and named here.
        let mut object: T = match serde_json::from_value(item.clone()) {
            Ok(o) => o,
            Err(e) => {
                self.warnings
                    .push(format!("{what}: not a valid object, left as it is: {e}"));
                return Ok(false);
            }
        };
        let Some((meta, spec)) = pod_of(&mut object) else {
            return Ok(false);
        };
        let config_map = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_CONFIG))
            .map_or(DEFAULT_CONFIG_MAP, String::as_str);
        let mut opts = self.opts.clone();
        if let Some(g) = self.graces.get(config_map) {
            opts.shutdown_grace = *g;
        }
        let outcome =
            super::inject_pod(meta, spec, &opts).map_err(|source| ManifestError::Inject {
                what: what.clone(),
                source,
            });
        let fronted = match outcome {
            Ok(Outcome::Injected(f)) => f,
            // `--all` sweeps in pods that serve nothing (a batch Job) or several ports:
            // left as they are, with a warning. Only an explicit `enabled` is an error.
            Err(e @ ManifestError::Inject { .. }) if self.opts.all && !annotated_enabled(meta) => {
                self.warnings.push(format!("not injected: {e}"));
                return Ok(false);
            }
            Err(e) => return Err(e),
            Ok(_) => return Ok(false),
        };
        self.targets.push(Target {
            what: what.clone(),
            namespace,
            labels: meta.labels.clone().unwrap_or_default(),
            fronted,
        });
        *item = serde_json::to_value(&object).map_err(|e| ManifestError::Emit {
            what,
            message: e.to_string(),
        })?;
        Ok(true)
    }
}

fn annotated_enabled(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(super::ANNOTATION_INJECT))
        .is_some_and(|v| v == "enabled")
}

/// Points a Service's ports that target an injected port by number at writ, and warns
/// about the ones that reach the application around writ.
fn rewire_service(
    item: &mut Value,
    targets: &[Target],
    warnings: &mut Vec<String>,
) -> Result<bool, ManifestError> {
    if kind_of(item) != ("v1", "Service") || targets.is_empty() {
        return Ok(false);
    }
    let what = describe(item);
    let mut svc: Service = match serde_json::from_value(item.clone()) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!("{what}: not a valid object, left as it is: {e}"));
            return Ok(false);
        }
    };
    let ns = svc.metadata.namespace.clone();
    let Some(spec) = svc.spec.as_mut() else {
        return Ok(false);
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let selected: Vec<&Target> = targets
        .iter()
        .filter(|t| match (&ns, &t.namespace) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .filter(|t| selector.iter().all(|(k, v)| t.labels.get(k) == Some(v)))
        .collect();
    let mut changed = false;
    for t in selected {
        let f = &t.fronted;
        for sp in spec.ports.iter_mut().flatten() {
            let target = sp.target_port.clone().unwrap_or(IntOrString::Int(sp.port));
            let bypass = |port: String| {
                format!(
                    "{what} port {} targets port {port} of {}, which writ does not front: that traffic bypasses writ",
                    sp.port, t.what
                )
            };
            match target {
                IntOrString::String(n) if n == f.name => {}
                IntOrString::Int(n) if n == f.proxy_port => {}
                IntOrString::Int(n) if n == f.app_port => {
                    sp.target_port = Some(IntOrString::String(f.name.clone()));
                    changed = true;
                }
                IntOrString::String(n) => {
                    let known = f.renamed().as_ref() == Some(&n)
                        || f.others.iter().any(|(name, _)| name.as_ref() == Some(&n));
                    warnings.push(if known {
                        bypass(n)
                    } else {
                        format!(
                            "{what} port {} targets port {n}, which no container of {} declares",
                            sp.port, t.what
                        )
                    });
                }
                IntOrString::Int(n) => warnings.push(bypass(n.to_string())),
            }
        }
    }
    if changed {
        *item = serde_json::to_value(&svc).map_err(|e| ManifestError::Emit {
            what,
            message: e.to_string(),
        })?;
    }
    Ok(changed)
}
