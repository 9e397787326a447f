//! Which application port writ fronts, the ports writ itself takes, and the rename of
//! the application's port to `app-<name>` (its own probes follow the rename).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::InjectError;

/// writ's proxy port when free in the pod; the next free number otherwise.
const PROXY_PORT: i32 = 15080;
/// writ's admin port (probes, metrics) when free in the pod.
const ADMIN_PORT: i32 = 15901;
/// The name of writ's admin port.
pub const ADMIN_PORT_NAME: &str = "writ-admin";
/// writ's port name when the fronted port has none.
const UNNAMED_PORT_NAME: &str = "http";
/// Kubernetes port names are IANA service names: at most 15 characters.
const MAX_PORT_NAME: usize = 15;

/// The fronted port and the ports writ takes for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fronted {
    /// The container whose port is fronted.
    pub container: String,
    /// The application's port number; writ forwards to 127.0.0.1 on it.
    pub app_port: i32,
    /// The application port's name before injection, if it had one.
    pub app_name: Option<String>,
    /// The name of writ's port: the application port's original name.
    pub name: String,
    /// writ's proxy port number.
    pub proxy_port: i32,
    /// writ's admin port number.
    pub admin_port: i32,
    /// Every other port of the pod, (name, number): traffic to them bypasses writ.
    pub others: Vec<(Option<String>, i32)>,
}

impl Fronted {
    /// The application port's name after injection.
    pub fn renamed(&self) -> Option<String> {
        self.app_name.as_ref().map(|n| format!("app-{n}"))
    }
}

/// Picks the fronted port: the annotated one (name or number), else the only port.
pub fn choose(spec: &PodSpec, annotated: Option<&str>) -> Result<Fronted, InjectError> {
    let all: Vec<(&Container, Option<&String>, i32)> = spec
        .containers
        .iter()
        .flat_map(|c| {
            c.ports
                .iter()
                .flatten()
                .map(move |p| (c, p.name.as_ref(), p.container_port))
        })
        .collect();
    let chosen = match annotated {
        Some(want) => {
            let by_number = want.parse::<i32>().ok();
            all.iter()
                .position(|(_, name, number)| {
                    name.is_some_and(|n| n == want) || Some(*number) == by_number
                })
                .ok_or_else(|| InjectError::PortNotFound(want.to_string()))?
        }
        None => match all.len() {
            0 => return Err(InjectError::NoPort),
            1 => 0,
            _ => {
                let listed: Vec<String> = all
                    .iter()
                    .map(|(_, name, number)| match name {
                        Some(n) => format!("{n}={number}"),
                        None => number.to_string(),
                    })
                    .collect();
                return Err(InjectError::AmbiguousPort(listed.join(", ")));
            }
        },
    };
    let (container, app_name, app_port) = all[chosen];
    if let Some(n) = app_name
        && n.len() + "app-".len() > MAX_PORT_NAME
    {
        return Err(InjectError::PortNameTooLong(n.clone()));
    }
    let others: Vec<(Option<String>, i32)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != chosen)
        .map(|(_, (_, name, number))| (name.cloned(), *number))
        .collect();
    let taken = |port: i32| all.iter().any(|(_, _, n)| *n == port);
    let free_from = |mut port: i32, also: i32| {
        while taken(port) || port == also {
            port += 1;
        }
        port
    };
    let proxy_port = free_from(PROXY_PORT, 0);
    let admin_port = free_from(ADMIN_PORT, proxy_port);
    let name = match app_name {
        Some(n) => n.clone(),
        None if others
            .iter()
            .any(|(n, _)| n.as_deref() == Some(UNNAMED_PORT_NAME)) =>
        {
            "writ-http".to_string()
        }
        None => UNNAMED_PORT_NAME.to_string(),
    };
    Ok(Fronted {
        container: container.name.clone(),
        app_port,
        app_name: app_name.cloned(),
        name,
        proxy_port,
        admin_port,
        others,
    })
}

/// Renames the fronted port to `app-<name>`, and points the container's own probes
/// and lifecycle hooks that named it at the new name (a named probe port resolves
/// within its container only, so they would otherwise fail to resolve).
pub fn rename_app_port(spec: &mut PodSpec, fronted: &Fronted) {
    let (Some(old), Some(new)) = (fronted.app_name.as_ref(), fronted.renamed()) else {
        return;
    };
    let Some(c) = spec
        .containers
        .iter_mut()
        .find(|c| c.name == fronted.container)
    else {
        return;
    };
    for p in c.ports.iter_mut().flatten() {
        if p.name.as_ref() == Some(old) {
            p.name = Some(new.clone());
        }
    }
    let rename = |port: &mut IntOrString| {
        if matches!(port, IntOrString::String(s) if s == old) {
            *port = IntOrString::String(new.clone());
        }
    };
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(h) = probe.http_get.as_mut() {
            rename(&mut h.port);
        }
        if let Some(t) = probe.tcp_socket.as_mut() {
            rename(&mut t.port);
        }
    }
    if let Some(l) = c.lifecycle.as_mut() {
        for hook in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
            if let Some(h) = hook.http_get.as_mut() {
                rename(&mut h.port);
            }
            if let Some(t) = hook.tcp_socket.as_mut() {
                rename(&mut t.port);
            }
        }
    }
}
