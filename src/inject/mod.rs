//! Kubernetes sidecar injection (SPEC: Kubernetes): the one code path that turns a pod
//! template into a pod template with writ in front of the application's port.
//! `writ inject` applies it to manifests (`manifest`), `writ webhook` to the pods the
//! API server admits (`crate::webhook`, which diffs before and after into a JSON Patch).
//!
//! What injection does to a pod: the fronted container port keeps its number and is
//! renamed `app-<name>`; writ (a native sidecar: an init container with
//! `restartPolicy: Always`, so it starts before the app, outlives it on shutdown, and
//! lets Jobs complete) listens on a port of its own that carries the original name,
//! and forwards to `127.0.0.1:<app port>`. Services that target the port by name
//! therefore reach writ with no change; `manifest` rewrites the ones that target it
//! by number. The ports and upstream reach `writ run` as `WRIT_LISTEN`, `WRIT_ADMIN`
//! and `WRIT_UPSTREAM_ADDR` (`crate::overrides`), so one ConfigMap serves every pod.

pub mod manifest;
mod ports;
mod sidecar;

use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use ports::Fronted;

/// `enabled` or `disabled` on a pod template (or a pod): whether writ is injected.
pub const ANNOTATION_INJECT: &str = "writ.dev/inject";
/// The application port writ fronts, by name or number.
pub const ANNOTATION_PORT: &str = "writ.dev/port";
/// The ConfigMap holding `writ.yaml`.
pub const ANNOTATION_CONFIG: &str = "writ.dev/config";
/// The writ image.
pub const ANNOTATION_IMAGE: &str = "writ.dev/image";
/// Set on an injected pod template, to the injecting writ's version.
pub const ANNOTATION_INJECTED: &str = "writ.dev/injected";

/// The ConfigMap used when `writ.dev/config` is absent.
pub const DEFAULT_CONFIG_MAP: &str = "writ-policy";
/// The image used when `writ.dev/image` is absent (and `--image` is not given).
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/writ-dev/writ:", env!("CARGO_PKG_VERSION"));
/// The name of the injected container.
pub const SIDECAR_NAME: &str = "writ";
/// writ's `shutdown_grace` default (SPEC: Settled questions, Config).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the caller decided for every pod it injects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inject every pod not annotated `writ.dev/inject: disabled` (`--all`; the webhook,
    /// whose namespace selector is the opt-in).
    pub all: bool,
    /// The image when the pod has no `writ.dev/image`.
    pub image: String,
    /// The policy's `shutdown_grace`: the pod's termination grace is made longer.
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            all: false,
            image: DEFAULT_IMAGE.to_string(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// What happened to one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// writ was added in front of this port.
    Injected(Fronted),
    /// Annotated `writ.dev/injected` or already running a container named `writ`.
    AlreadyInjected,
    /// Annotated `writ.dev/inject: disabled`.
    Disabled,
    /// Not annotated `enabled`, and not `--all`.
    NotSelected,
}

/// A pod that asked for writ but cannot get it; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// No container declares a port, so there is nothing to front.
    #[error(
        "no container declares a port; writ needs one to front (containerPort, or {ANNOTATION_PORT})"
    )]
    NoPort,
    /// Several ports and no annotation saying which.
    #[error(
        "several container ports ({0}); say which one writ fronts with the {ANNOTATION_PORT} annotation"
    )]
    AmbiguousPort(String),
    /// The annotated port is not declared by any container.
    #[error("{ANNOTATION_PORT}: no container declares port `{0}`")]
    PortNotFound(String),
    /// `app-<name>` would be longer than a port name may be (15 characters).
    #[error(
        "port name `{0}` is too long to rename to `app-{0}` (port names are at most 15 characters)"
    )]
    PortNameTooLong(String),
    /// `writ.dev/inject` has a value other than enabled/disabled.
    #[error("{ANNOTATION_INJECT}: `{0}` is neither `enabled` nor `disabled`")]
    BadInjectValue(String),
}

/// Injects writ into one pod (template) in place, or says why not. On an error the
/// pod is unchanged.
pub fn inject_pod(
    meta: &mut ObjectMeta,
    spec: &mut PodSpec,
    opts: &Options,
) -> Result<Outcome, InjectError> {
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key)).cloned();
    match annotation(ANNOTATION_INJECT).as_deref() {
        Some("disabled") => return Ok(Outcome::Disabled),
        Some("enabled") => {}
        Some(other) => return Err(InjectError::BadInjectValue(other.to_string())),
        None if opts.all => {}
        None => return Ok(Outcome::NotSelected),
    }
    if annotation(ANNOTATION_INJECTED).is_some() || sidecar::present(spec) {
        return Ok(Outcome::AlreadyInjected);
    }
    let fronted = ports::choose(spec, annotation(ANNOTATION_PORT).as_deref())?;
    ports::rename_app_port(spec, &fronted);
    let image = annotation(ANNOTATION_IMAGE).unwrap_or_else(|| opts.image.clone());
    let config_map =
        annotation(ANNOTATION_CONFIG).unwrap_or_else(|| DEFAULT_CONFIG_MAP.to_string());
    sidecar::add(spec, &fronted, &image, &config_map, opts.shutdown_grace);
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(
            ANNOTATION_INJECTED.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
    Ok(Outcome::Injected(fronted))
}
