//! The injected container, its config volume and the pod's termination grace.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec,
    Probe, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::SIDECAR_NAME;
use super::ports::{ADMIN_PORT_NAME, Fronted};
use crate::overrides;

/// The UID and GID writ runs as: distroless's `nonroot`, the image's `USER`.
pub const UID: i64 = 65532;
/// Where the ConfigMap is mounted; `writ.yaml` inside it is the policy.
const CONFIG_DIR: &str = "/etc/writ";
const VOLUME: &str = "writ-config";
/// Kubernetes' default `terminationGracePeriodSeconds`.
const K8S_DEFAULT_GRACE: i64 = 30;
/// How much longer than `shutdown_grace` the pod may take to stop: writ drains for
/// `shutdown_grace`, then exits; the kubelet must not SIGKILL it before.
const GRACE_MARGIN: i64 = 5;

/// Whether the pod already runs a container named `writ` (injected, or hand-written).
pub fn present(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == SIDECAR_NAME)
}

/// Adds writ as a native sidecar, the ConfigMap volume, and a long enough grace.
pub fn add(
    spec: &mut PodSpec,
    fronted: &Fronted,
    image: &str,
    config_map: &str,
    shutdown_grace: Duration,
) {
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .push(container(fronted, image));
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let grace_secs = i64::try_from(shutdown_grace.as_secs()).unwrap_or(i64::MAX - GRACE_MARGIN)
        + i64::from(shutdown_grace.subsec_nanos() > 0)
        + GRACE_MARGIN;
    let current = spec
        .termination_grace_period_seconds
        .unwrap_or(K8S_DEFAULT_GRACE);
    spec.termination_grace_period_seconds = Some(current.max(grace_secs));
}

fn container(fronted: &Fronted, image: &str) -> Container {
    let env = |name: &str, value: String| EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..Default::default()
    };
    let probe = |path: &str, period: i32, failure: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Default::default()
    };
    let quantity = |q: &str| Quantity(q.to_string());
    Container {
        name: SIDECAR_NAME.to_string(),
        image: Some(image.to_string()),
        args: Some(
            ["run", "--config", "/etc/writ/writ.yaml"]
                .map(String::from)
                .to_vec(),
        ),
        // A native sidecar: started before the app containers, stopped after them.
        restart_policy: Some("Always".to_string()),
        env: Some(vec![
            env(overrides::LISTEN, format!("0.0.0.0:{}", fronted.proxy_port)),
            env(overrides::ADMIN, format!("0.0.0.0:{}", fronted.admin_port)),
            env(
                overrides::UPSTREAM_ADDR,
                format!("127.0.0.1:{}", fronted.app_port),
            ),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some(fronted.name.clone()),
                container_port: fronted.proxy_port,
                protocol: Some("TCP".to_string()),
                ..Default::default()
            },
            ContainerPort {
                name: Some(ADMIN_PORT_NAME.to_string()),
                container_port: fronted.admin_port,
                protocol: Some("TCP".to_string()),
                ..Default::default()
            },
        ]),
        // /readyz is 503 until keys are loaded and from SIGTERM on: out of the
        // endpoints at once. /healthz only fails when writ is wedged.
        readiness_probe: Some(probe("/readyz", 2, 1)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), quantity("50m")),
                ("memory".to_string(), quantity("32Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), quantity("256Mi"))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.to_string(),
            mount_path: CONFIG_DIR.to_string(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    }
}
