//! The deployment files agree with sagad: every `SAGAD_*` variable the Kubernetes manifests
//! (`deploy/k8s`), the compose file and the image set is one `sagad::Settings` accepts; the ports they
//! declare are the ones the settings listen on; the readiness probe asks for the service sagad reports
//! in health; the kubelet and compose wait longer than `shutdown_grace` before SIGKILL; and the
//! definitions they ship load against the participants they configure. (The files' syntax and schema
//! are checked by `scripts/check-files.sh`: kubernetes-validate, docker-compose config, hadolint.)

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::repo_root;
use saga_proto::v1::saga_coordinator_server::SERVICE_NAME;
use sagad::Settings;
use serde::Deserialize;
use serde_norway::Value;

fn path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every document of a YAML file, merge keys (`<<: *anchor`) applied.
fn documents(relative: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(relative))
        .map(|document| {
            let mut value =
                Value::deserialize(document).unwrap_or_else(|e| panic!("{relative}: {e}"));
            value.apply_merge().expect("merge keys");
            value
        })
        .collect()
}

/// The one document of `kind` named `name`.
fn resource<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a number: {value:?}"))
}

fn list(value: &Value) -> &[Value] {
    value.as_sequence().map_or(&[], Vec::as_slice)
}

/// The `SAGAD_*` variables the image sets (`ENV` lines of deploy/Dockerfile).
fn image_env() -> Vec<(String, String)> {
    read("deploy/Dockerfile")
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The ports the image declares (`EXPOSE`).
fn image_ports() -> BTreeSet<u64> {
    read("deploy/Dockerfile")
        .lines()
        .filter_map(|line| line.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .map(|port| port.parse().expect("a port number"))
        .collect()
}

/// Loads sagad's settings as the container would: the image's variables, then the file's.
fn settings(config: Option<&Path>, env: &[(String, String)]) -> Settings {
    let image = image_env();
    let all: Vec<(&str, &str)> = image
        .iter()
        .chain(env)
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    Settings::load_with_env(config, all).unwrap_or_else(|e| {
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        panic!("sagad refuses these settings: {e} ({cause:?}); variables {env:?}")
    })
}

/// The metrics port the settings listen on; metrics must be on.
fn metrics_port(settings: &Settings) -> u64 {
    let addr = settings.metrics_addr.expect("metrics are served");
    u64::from(addr.port())
}

/// The definitions in `dir` load with the participants `settings` configure, as sagad loads them.
fn assert_definitions_load(dir: &Path, settings: &Settings) {
    let participants: HashSet<String> = settings.participants.keys().cloned().collect();
    let definitions = sagad::definitions::load_dir(dir, &participants)
        .unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()));
    assert!(
        !definitions.is_empty(),
        "no definitions in {}",
        dir.display()
    );
}

/// `(host, port)` of an `http://host:port` endpoint.
fn host_port(endpoint: &str) -> (&str, u64) {
    let authority = endpoint
        .strip_prefix("http://")
        .expect("an http:// endpoint");
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    (host, port.parse().expect("a port"))
}

fn container_ports(container: &Value) -> BTreeMap<String, u64> {
    list(&container["ports"])
        .iter()
        .map(|p| (text(&p["name"]).to_owned(), number(&p["containerPort"])))
        .collect()
}

fn kubernetes_env(container: &Value) -> Vec<(String, String)> {
    list(&container["env"])
        .iter()
        .map(|var| {
            let value = match (&var["value"], &var["valueFrom"]) {
                (Value::String(value), _) => value.clone(),
                // From a Secret: any value of the right shape; the check is about the name.
                (_, Value::Mapping(_)) => "postgres://user@postgres:5432/sagad".to_owned(),
                other => panic!("{var:?} has neither value nor valueFrom: {other:?}"),
            };
            (text(&var["name"]).to_owned(), value)
        })
        .collect()
}

#[test]
fn the_kubernetes_manifests_match_sagads_settings_ports_health_and_shutdown() {
    let docs = documents("deploy/k8s/sagad.yaml");
    let deployment = resource(&docs, "Deployment", "sagad");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let command: Vec<&str> = list(&container["command"]).iter().map(text).collect();
    assert_eq!(
        command,
        ["sagad", "--config", "/etc/sagad/config/sagad.toml"]
    );

    let env = kubernetes_env(container);
    for (name, _) in &env {
        assert!(name.starts_with("SAGAD_"), "{name} is not a sagad setting");
    }
    let database = list(&container["env"])
        .iter()
        .find(|var| var["name"].as_str() == Some("SAGAD_DATABASE_URL"))
        .expect("SAGAD_DATABASE_URL is set");
    assert_eq!(
        text(&database["valueFrom"]["secretKeyRef"]["name"]),
        "sagad-database"
    );
    let settings = settings(Some(&path("deploy/k8s/sagad.toml")), &env);

    let ports = container_ports(container);
    assert_eq!(ports["grpc"], u64::from(settings.grpc_addr.port()));
    assert_eq!(ports["metrics"], metrics_port(&settings));
    let service = resource(&docs, "Service", "sagad");
    for port in list(&service["spec"]["ports"]) {
        let target = text(&port["targetPort"]);
        assert_eq!(
            number(&port["port"]),
            ports[target],
            "Service port {target}"
        );
    }

    let readiness = &container["readinessProbe"]["grpc"];
    assert_eq!(text(&readiness["service"]), SERVICE_NAME);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            number(&container[probe]["grpc"]["port"]),
            ports["grpc"],
            "{probe}"
        );
    }
    let grace = Duration::from_secs(number(&pod["terminationGracePeriodSeconds"]));
    assert!(
        grace > settings.shutdown_grace,
        "{grace:?} <= shutdown_grace"
    );

    assert_eq!(number(&deployment["spec"]["replicas"]), 3);
    let budget = resource(&docs, "PodDisruptionBudget", "sagad");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The definitions ConfigMap is mounted where the image's SAGAD_DEFINITIONS_DIR points.
    let mounts: BTreeMap<&str, &str> = list(&container["volumeMounts"])
        .iter()
        .map(|m| (text(&m["name"]), text(&m["mountPath"])))
        .collect();
    assert_eq!(Path::new(mounts["definitions"]), settings.definitions_dir);
    assert_definitions_load(&path("deploy/k8s/definitions"), &settings);

    // Every participant endpoint is a port of the demo participants' Service and container.
    let participants = documents("deploy/k8s/participants.yaml");
    let participant_service = resource(&participants, "Service", "demo-participants");
    let participant_ports = container_ports(
        &resource(&participants, "Deployment", "demo-participants")["spec"]["template"]["spec"]["containers"]
            [0],
    );
    for (name, endpoint) in &settings.participants {
        let (host, port) = host_port(endpoint);
        assert_eq!(host, "demo-participants", "{name}");
        let served = list(&participant_service["spec"]["ports"])
            .iter()
            .find(|p| number(&p["port"]) == port)
            .unwrap_or_else(|| panic!("{name}: no Service port {port}"));
        assert_eq!(
            participant_ports[text(&served["targetPort"])],
            port,
            "{name}"
        );
    }
    // The container serves them on demo-participants' own default ports (it sets no DEMO_*_ADDR),
    // which are sagad's default participant endpoints.
    let defaults: BTreeSet<u64> = Settings::default()
        .participants
        .values()
        .map(|endpoint| host_port(endpoint).1)
        .collect();
    assert_eq!(
        participant_ports.values().copied().collect::<BTreeSet<_>>(),
        defaults
    );
}

#[test]
fn every_container_runs_unprivileged_on_a_read_only_root_filesystem() {
    for file in ["deploy/k8s/sagad.yaml", "deploy/k8s/participants.yaml"] {
        for deployment in documents(file)
            .iter()
            .filter(|d| d["kind"].as_str() == Some("Deployment"))
        {
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{file}"
            );
            for container in list(&pod["containers"]) {
                let security = &container["securityContext"];
                assert_eq!(
                    security["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{file}"
                );
                assert_eq!(
                    security["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{file}"
                );
                assert!(
                    container["resources"]["requests"].is_mapping(),
                    "{file}: resources"
                );
                assert!(
                    container["resources"]["limits"]["memory"].is_string(),
                    "{file}: memory limit"
                );
            }
        }
    }
}

#[test]
fn the_kustomization_ships_the_repositorys_definitions_unchanged() {
    let kustomization = &documents("deploy/k8s/kustomization.yaml")[0];
    for resource in list(&kustomization["resources"]) {
        assert!(
            path(&format!("deploy/k8s/{}", text(resource))).is_file(),
            "{resource:?}"
        );
    }
    let generated: BTreeSet<String> = list(&kustomization["configMapGenerator"])
        .iter()
        .flat_map(|generator| list(&generator["files"]))
        .map(|file| text(file).to_owned())
        .collect();
    assert!(generated.contains("sagad.toml"));
    let shipped: BTreeSet<String> = std::fs::read_dir(path("definitions"))
        .expect("definitions/")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    let copies: BTreeSet<String> = generated
        .iter()
        .filter_map(|file| file.strip_prefix("definitions/"))
        .map(str::to_owned)
        .collect();
    let fix = "copy them and list them in deploy/k8s/kustomization.yaml: \
               cp definitions/*.yaml deploy/k8s/definitions/";
    assert_eq!(
        copies, shipped,
        "the ConfigMap must hold every definition; {fix}"
    );
    for name in &shipped {
        let same =
            read(&format!("deploy/k8s/definitions/{name}")) == read(&format!("definitions/{name}"));
        assert!(
            same,
            "deploy/k8s/definitions/{name} differs from definitions/{name}; {fix}"
        );
    }
}

#[test]
fn the_compose_file_and_the_image_match_sagads_settings_and_ports() {
    let compose = &documents("docker-compose.yml")[0];
    let sagad = &compose["services"]["sagad"];
    let env: Vec<(String, String)> = sagad["environment"]
        .as_mapping()
        .expect("environment as a map")
        .iter()
        .map(|(key, value)| (text(key).to_owned(), text(value).to_owned()))
        .collect();
    for (name, _) in &env {
        assert!(name.starts_with("SAGAD_"), "{name} is not a sagad setting");
    }
    let settings = settings(None, &env);

    let published: BTreeSet<u64> = list(&sagad["ports"])
        .iter()
        .map(|mapping| {
            text(mapping)
                .rsplit(':')
                .next()
                .expect("a port")
                .parse()
                .expect("a port")
        })
        .collect();
    let grpc = u64::from(settings.grpc_addr.port());
    let metrics = metrics_port(&settings);
    assert_eq!(published, BTreeSet::from([grpc, metrics]));
    let exposed = image_ports();
    assert!(
        exposed.contains(&grpc) && exposed.contains(&metrics),
        "EXPOSE {exposed:?}"
    );

    let grace = humantime::parse_duration(text(&sagad["stop_grace_period"])).expect("a duration");
    assert!(
        grace > settings.shutdown_grace,
        "stop_grace_period {grace:?} <= shutdown_grace"
    );

    // The image's definitions (the repository's) load with the participants compose configures, and
    // each endpoint is a port the participants service publishes.
    assert_definitions_load(&path("definitions"), &settings);
    let participant_ports = text(&compose["services"]["participants"]["ports"][0]);
    let (first, last) = participant_ports
        .rsplit(':')
        .next()
        .and_then(|range| range.split_once('-'))
        .expect("a port range");
    let range = first.parse::<u64>().expect("port")..=last.parse::<u64>().expect("port");
    for (name, endpoint) in &settings.participants {
        let (host, port) = host_port(endpoint);
        assert_eq!(host, "participants", "{name}");
        assert!(
            range.contains(&port),
            "{name}: port {port} outside {range:?}"
        );
    }
}
