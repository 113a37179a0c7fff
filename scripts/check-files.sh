#!/usr/bin/env bash
# Lints the files that are not Rust, with the tools scripts/ensure-tools.sh installs into tools/bin:
#   protos          buf lint (buf.yaml), and buf breaking against the last released protos
#   Dockerfile      hadolint
#   compose file    docker-compose config (validates without a container engine)
#   Kubernetes      kubernetes-validate --strict, offline schemas, every manifest of deploy/k8s
#   Prometheus      promtool check config/rules and the alert rules' unit tests (promtool test rules)
#   Grafana         the dashboard is JSON (tests/tests/e2e/metrics.rs checks its metrics exist)
# tests/tests/e2e/deploy.rs checks what these cannot: that the files agree with sagad's settings.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=tools/bin

"$bin/buf" lint
# proto/released.binpb is the image of the protos as last released (a buf image: CI needs no tags or
# history). At a release, refresh it from the released protos:  tools/bin/buf build -o proto/released.binpb
"$bin/buf" breaking --against proto/released.binpb
"$bin/hadolint" deploy/Dockerfile
"$bin/docker-compose" --file docker-compose.yml config --quiet
# The kustomization itself is not a Kubernetes resource; the ConfigMaps it generates are checked by
# tests/tests/e2e/deploy.rs.
"$bin/kubernetes-validate" --strict --quiet deploy/k8s/sagad.yaml deploy/k8s/participants.yaml
"$bin/promtool" check config deploy/prometheus/prometheus.yml
"$bin/promtool" check rules deploy/prometheus/sagad-rules.yml
"$bin/promtool" test rules deploy/prometheus/sagad-rules.test.yml
python3 -m json.tool deploy/grafana/sagad.json >/dev/null
echo "check-files: protos, Dockerfile, compose file, Kubernetes manifests, alert rules and dashboard pass"
