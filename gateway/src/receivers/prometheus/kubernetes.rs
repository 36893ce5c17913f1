//! `kubernetes_sd_configs`: targets from the Kubernetes API through the `kube` client, with the
//! `__meta_kubernetes_*` labels Prometheus gives them, so that the usual relabeling (the
//! `prometheus.io/scrape` annotation convention) works unchanged.
//!
//! - `role: pod`: a target per declared container port at `podIP:port` (one without a port for
//!   a container that declares none), labelled with the pod's namespace, name, IP, labels,
//!   annotations, phase, readiness, node, controller and the container's name and port.
//! - `role: endpoints`: a target per address and port of each Endpoints object, with the
//!   endpoints' and their service's labels and, for addresses backed by a pod, the pod's.
//!
//! The objects are listed again every `refresh_interval` (Prometheus watches them); a failed
//! list keeps the last good targets, as for the other discovery mechanisms.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, ListParams};
use kube::{Client, Config};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::http::Credentials;
use crate::config::{KubernetesRole, KubernetesSdConfig, StaticConfig};

/// The most objects of one kind listed per refresh.
const MAX_OBJECTS: u32 = 50_000;

pub struct KubernetesSource {
    config: KubernetesSdConfig,
    client: Option<Client>,
    /// The namespaces to list; empty: all.
    namespaces: Vec<String>,
    pub groups: Vec<StaticConfig>,
    next: Instant,
}

impl std::fmt::Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource")
            .field("role", &self.config.role)
            .field("namespaces", &self.namespaces)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl KubernetesSource {
    pub fn new(config: KubernetesSdConfig) -> KubernetesSource {
        KubernetesSource {
            config,
            client: None,
            namespaces: Vec::new(),
            groups: Vec::new(),
            next: Instant::now(),
        }
    }

    /// Lists again when due; true when the groups changed. A failure keeps the old groups.
    pub async fn refresh(&mut self) -> Result<bool, String> {
        if Instant::now() < self.next {
            return Ok(false);
        }
        self.next = Instant::now() + self.config.refresh_interval;
        let reads_files = self.config.bearer_token_file.is_some()
            || self
                .config
                .authorization
                .as_ref()
                .is_some_and(|a| a.credentials_file.is_some())
            || self
                .config
                .basic_auth
                .as_ref()
                .is_some_and(|b| b.password_file.is_some());
        if self.client.is_none() || reads_files {
            let (client, own) = client(&self.config)?;
            let mut namespaces = self.config.namespaces.names.clone();
            if self.config.namespaces.own_namespace && !namespaces.contains(&own) {
                namespaces.push(own);
            }
            self.namespaces = namespaces;
            self.client = Some(client);
        }
        let Some(client) = self.client.clone() else {
            return Ok(false);
        };
        let groups = match self.config.role {
            KubernetesRole::Pod => {
                let pods: Vec<Pod> = self.list(&client).await?;
                pods.iter().flat_map(pod_targets).collect()
            }
            KubernetesRole::Endpoints => {
                let endpoints: Vec<Endpoints> = self.list(&client).await?;
                let services: Vec<Service> = self.list(&client).await?;
                let pods: Vec<Pod> = self.list(&client).await?;
                endpoints_targets(&endpoints, &services, &pods)
            }
        };
        let changed = groups != self.groups;
        self.groups = groups;
        Ok(changed)
    }

    async fn list<K>(&self, client: &Client) -> Result<Vec<K>, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let params = ListParams::default().limit(MAX_OBJECTS);
        let apis: Vec<Api<K>> = if self.namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let mut out = Vec::new();
        for api in apis {
            let list = tokio::time::timeout(Duration::from_secs(30), api.list(&params))
                .await
                .map_err(|_| "the API server did not answer within 30s".to_string())?
                .map_err(|e| format!("listing {}: {e}", K::plural(&Default::default())))?;
            out.extend(list.items);
        }
        Ok(out)
    }
}

/// A client for the configured API server, or the cluster's own; and the gateway's namespace.
fn client(c: &KubernetesSdConfig) -> Result<(Client, String), String> {
    let mut config = match &c.api_server {
        None => Config::incluster()
            .map_err(|e| format!("no api_server given and not running in a cluster: {e}"))?,
        Some(url) => {
            let uri = url
                .parse::<http::Uri>()
                .map_err(|e| format!("api_server `{url}`: {e}"))?;
            Config::new(uri)
        }
    };
    let own = config.default_namespace.clone();
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    // Credentials files are read here, trimmed as Prometheus trims them; the client is built
    // again at each refresh when one is set, so a rotated token is picked up.
    let credentials = match (&c.authorization, &c.bearer_token_file) {
        (None, Some(file)) => Credentials::Token {
            kind: "Bearer".into(),
            value: None,
            file: Some(file.clone()),
        },
        _ => Credentials::new(c.basic_auth.as_ref(), c.authorization.as_ref(), None, None),
    };
    if let Some(value) = credentials.header()? {
        config.headers.push((http::header::AUTHORIZATION, value));
    }
    if let Some(tls) = &c.tls_config {
        if let Some(ca) = &tls.ca_file {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            config.auth_info.client_certificate = Some(cert.display().to_string());
            config.auth_info.client_key = Some(key.display().to_string());
        }
        config.accept_invalid_certs = tls.insecure_skip_verify;
    }
    let client = Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
    Ok((client, own))
}

/// A label name Prometheus makes of a Kubernetes label or annotation key: every character
/// outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn bool_text(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

/// The labels a pod's targets share.
fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let meta = &pod.metadata;
    let put = |labels: &mut BTreeMap<String, String>, k: &str, v: &str| {
        labels.insert(format!("__meta_kubernetes_{k}"), v.to_string());
    };
    put(
        &mut labels,
        "namespace",
        meta.namespace.as_deref().unwrap_or(""),
    );
    put(&mut labels, "pod_name", meta.name.as_deref().unwrap_or(""));
    put(&mut labels, "pod_uid", meta.uid.as_deref().unwrap_or(""));
    for (k, v) in meta.labels.iter().flatten() {
        put(&mut labels, &format!("pod_label_{}", sanitize(k)), v);
        put(
            &mut labels,
            &format!("pod_labelpresent_{}", sanitize(k)),
            "true",
        );
    }
    for (k, v) in meta.annotations.iter().flatten() {
        put(&mut labels, &format!("pod_annotation_{}", sanitize(k)), v);
        put(
            &mut labels,
            &format!("pod_annotationpresent_{}", sanitize(k)),
            "true",
        );
    }
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        put(&mut labels, "pod_controller_kind", &owner.kind);
        put(&mut labels, "pod_controller_name", &owner.name);
    }
    if let Some(status) = &pod.status {
        put(
            &mut labels,
            "pod_ip",
            status.pod_ip.as_deref().unwrap_or(""),
        );
        put(
            &mut labels,
            "pod_host_ip",
            status.host_ip.as_deref().unwrap_or(""),
        );
        put(
            &mut labels,
            "pod_phase",
            status.phase.as_deref().unwrap_or(""),
        );
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        put(&mut labels, "pod_ready", &bool_text(ready));
    }
    if let Some(spec) = &pod.spec {
        put(
            &mut labels,
            "pod_node_name",
            spec.node_name.as_deref().unwrap_or(""),
        );
    }
    labels
}

/// A pod's targets: one per declared container port, one per container without ports.
pub fn pod_targets(pod: &Pod) -> Vec<StaticConfig> {
    let Some(ip) = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
    else {
        return Vec::new();
    };
    let base = pod_labels(pod);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let containers = spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(spec.init_containers.iter().flatten().map(|c| (c, true)));
    for (container, init) in containers {
        let mut labels = base.clone();
        labels.insert(
            "__meta_kubernetes_pod_container_name".into(),
            container.name.clone(),
        );
        labels.insert(
            "__meta_kubernetes_pod_container_image".into(),
            container.image.clone().unwrap_or_default(),
        );
        labels.insert(
            "__meta_kubernetes_pod_container_init".into(),
            bool_text(init),
        );
        let ports = container.ports.as_deref().unwrap_or(&[]);
        if ports.is_empty() {
            if !init {
                out.push(StaticConfig {
                    targets: vec![host.clone()],
                    labels,
                });
            }
            continue;
        }
        for port in ports {
            let mut labels = labels.clone();
            labels.insert(
                "__meta_kubernetes_pod_container_port_name".into(),
                port.name.clone().unwrap_or_default(),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_number".into(),
                port.container_port.to_string(),
            );
            labels.insert(
                "__meta_kubernetes_pod_container_port_protocol".into(),
                port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            );
            out.push(StaticConfig {
                targets: vec![format!("{host}:{}", port.container_port)],
                labels,
            });
        }
    }
    out
}

/// The targets of Endpoints objects, with their service's and pods' labels.
pub fn endpoints_targets(
    endpoints: &[Endpoints],
    services: &[Service],
    pods: &[Pod],
) -> Vec<StaticConfig> {
    let key = |ns: &Option<String>, name: &Option<String>| {
        (
            ns.clone().unwrap_or_default(),
            name.clone().unwrap_or_default(),
        )
    };
    let services: BTreeMap<_, _> = services
        .iter()
        .map(|s| (key(&s.metadata.namespace, &s.metadata.name), s))
        .collect();
    let pods: BTreeMap<_, _> = pods
        .iter()
        .map(|p| (key(&p.metadata.namespace, &p.metadata.name), p))
        .collect();
    let mut out = Vec::new();
    for ep in endpoints {
        let meta = &ep.metadata;
        let mut base = BTreeMap::new();
        base.insert(
            "__meta_kubernetes_namespace".to_string(),
            meta.namespace.clone().unwrap_or_default(),
        );
        base.insert(
            "__meta_kubernetes_endpoints_name".to_string(),
            meta.name.clone().unwrap_or_default(),
        );
        for (k, v) in meta.labels.iter().flatten() {
            base.insert(
                format!("__meta_kubernetes_endpoints_label_{}", sanitize(k)),
                v.clone(),
            );
            base.insert(
                format!("__meta_kubernetes_endpoints_labelpresent_{}", sanitize(k)),
                "true".into(),
            );
        }
        if let Some(service) = services.get(&key(&meta.namespace, &meta.name)) {
            let sm = &service.metadata;
            base.insert(
                "__meta_kubernetes_service_name".into(),
                sm.name.clone().unwrap_or_default(),
            );
            for (k, v) in sm.labels.iter().flatten() {
                base.insert(
                    format!("__meta_kubernetes_service_label_{}", sanitize(k)),
                    v.clone(),
                );
                base.insert(
                    format!("__meta_kubernetes_service_labelpresent_{}", sanitize(k)),
                    "true".into(),
                );
            }
            for (k, v) in sm.annotations.iter().flatten() {
                base.insert(
                    format!("__meta_kubernetes_service_annotation_{}", sanitize(k)),
                    v.clone(),
                );
                base.insert(
                    format!(
                        "__meta_kubernetes_service_annotationpresent_{}",
                        sanitize(k)
                    ),
                    "true".into(),
                );
            }
        }
        for subset in ep.subsets.iter().flatten() {
            let addresses = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
                subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .map(|a| (a, false)),
            );
            for (address, ready) in addresses {
                let mut labels = base.clone();
                labels.insert("__meta_kubernetes_endpoint_ready".into(), bool_text(ready));
                if let Some(h) = &address.hostname {
                    labels.insert("__meta_kubernetes_endpoint_hostname".into(), h.clone());
                }
                if let Some(n) = &address.node_name {
                    labels.insert("__meta_kubernetes_endpoint_node_name".into(), n.clone());
                }
                if let Some(target) = &address.target_ref {
                    labels.insert(
                        "__meta_kubernetes_endpoint_address_target_kind".into(),
                        target.kind.clone().unwrap_or_default(),
                    );
                    labels.insert(
                        "__meta_kubernetes_endpoint_address_target_name".into(),
                        target.name.clone().unwrap_or_default(),
                    );
                    if target.kind.as_deref() == Some("Pod")
                        && let Some(pod) = pods.get(&key(&target.namespace, &target.name))
                    {
                        labels.extend(pod_labels(pod));
                    }
                }
                let host = if address.ip.contains(':') {
                    format!("[{}]", address.ip)
                } else {
                    address.ip.clone()
                };
                for port in subset.ports.iter().flatten() {
                    let mut labels = labels.clone();
                    labels.insert(
                        "__meta_kubernetes_endpoint_port_name".into(),
                        port.name.clone().unwrap_or_default(),
                    );
                    labels.insert(
                        "__meta_kubernetes_endpoint_port_protocol".into(),
                        port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    );
                    out.push(StaticConfig {
                        targets: vec![format!("{host}:{}", port.port)],
                        labels,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a Pod")
    }

    #[test]
    fn pods_become_targets_with_prometheus_meta_labels() {
        let p = pod(serde_json::json!({
            "metadata": {
                "name": "shop-7d9", "namespace": "prod", "uid": "u-1",
                "labels": {"app.kubernetes.io/name": "shop"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-7d9", "uid": "r", "controller": true}]
            },
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "app", "image": "shop:1", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9102, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "proxy:2"}
            ]},
            "status": {"podIP": "10.1.2.3", "hostIP": "192.168.0.5", "phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let groups = pod_targets(&p);
        let targets: Vec<&str> = groups.iter().map(|g| g.targets[0].as_str()).collect();
        assert_eq!(targets, ["10.1.2.3:8080", "10.1.2.3:9102", "10.1.2.3"]);
        let l = &groups[0].labels;
        assert_eq!(l["__meta_kubernetes_namespace"], "prod");
        assert_eq!(l["__meta_kubernetes_pod_name"], "shop-7d9");
        assert_eq!(
            l["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "shop"
        );
        assert_eq!(
            l["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "true"
        );
        assert_eq!(
            l["__meta_kubernetes_pod_annotationpresent_prometheus_io_port"],
            "true"
        );
        assert_eq!(l["__meta_kubernetes_pod_container_port_name"], "http");
        assert_eq!(l["__meta_kubernetes_pod_ready"], "true");
        assert_eq!(l["__meta_kubernetes_pod_controller_kind"], "ReplicaSet");
        assert_eq!(l["__meta_kubernetes_pod_node_name"], "node-1");
        assert_eq!(
            groups[2].labels["__meta_kubernetes_pod_container_name"],
            "sidecar"
        );
        // A pod without an IP yet has no targets.
        let pending = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}}),
        );
        assert!(pod_targets(&pending).is_empty());
    }

    #[test]
    fn endpoints_carry_their_service_and_pod_labels() {
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop", "namespace": "prod"},
            "subsets": [{
                "addresses": [{"ip": "10.1.2.3", "targetRef": {"kind": "Pod", "name": "shop-7d9", "namespace": "prod"}}],
                "notReadyAddresses": [{"ip": "10.1.2.4"}],
                "ports": [{"name": "metrics", "port": 9102, "protocol": "TCP"}]
            }]
        }))
        .expect("Endpoints");
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop", "namespace": "prod", "labels": {"tier": "web"}, "annotations": {"prometheus.io/scrape": "true"}}
        }))
        .expect("Service");
        let p = pod(
            serde_json::json!({"metadata": {"name": "shop-7d9", "namespace": "prod", "labels": {"app": "shop"}}, "status": {"podIP": "10.1.2.3"}}),
        );
        let groups = endpoints_targets(&[endpoints], &[service], &[p]);
        assert_eq!(groups.len(), 2);
        let ready = &groups[0];
        assert_eq!(ready.targets, ["10.1.2.3:9102"]);
        assert_eq!(ready.labels["__meta_kubernetes_endpoint_ready"], "true");
        assert_eq!(ready.labels["__meta_kubernetes_service_label_tier"], "web");
        assert_eq!(
            ready.labels["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
            "true"
        );
        assert_eq!(ready.labels["__meta_kubernetes_pod_label_app"], "shop");
        assert_eq!(
            ready.labels["__meta_kubernetes_endpoint_port_name"],
            "metrics"
        );
        assert_eq!(
            groups[1].labels["__meta_kubernetes_endpoint_ready"],
            "false"
        );
    }

    #[test]
    fn keys_are_sanitized_as_prometheus_does() {
        assert_eq!(sanitize("prometheus.io/scrape"), "prometheus_io_scrape");
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
    }
}
