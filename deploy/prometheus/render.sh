#!/usr/bin/env bash
# Renders etcd's monitoring mixin (contrib/mixin in etcd's repository) into
# the plain files kept here, so neither jsonnet nor etcd's sources are needed
# to use them:
#   etcd-alerts.yaml       Prometheus alerting rules (the mixin's prometheusAlerts)
#   etcd-dashboard.json    the Grafana dashboard (the mixin's grafana7x variant:
#                          plain JSON, the same queries as the grafonnet one)
#   etcd-alerts-test.yaml  the mixin's own promtool unit tests of the rules
#
#   deploy/prometheus/render.sh ETCD_CHECKOUT
#
# Needs jsonnet and python3-yaml (Debian: apt-get install jsonnet python3-yaml).
# Rendered last from etcd c34dc7ee0048 (main after v3.8.0-alpha.0).
set -euo pipefail
[ $# -eq 1 ] && [ -f "$1/contrib/mixin/mixin.libsonnet" ] || { echo "usage: $0 ETCD_CHECKOUT" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
cd "$1/contrib/mixin"
jsonnet -e '(import "mixin.libsonnet").prometheusAlerts' |
  python3 -c '
import json, sys, yaml
def text(dumper, s):  # multi-line expressions as literal blocks, as the mixin writes them
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
yaml.SafeDumper.add_representer(str, text)
yaml.safe_dump(json.load(sys.stdin), sys.stdout, sort_keys=False, width=1000)' > "$here/etcd-alerts.yaml"
jsonnet -e '((import "mixin.libsonnet") + {_config+:: {grafana7x: true}}).grafanaDashboards["etcd.json"]' \
  > "$here/etcd-dashboard.json"
sed 's#manifests/etcd-prometheusRules.yaml#etcd-alerts.yaml#' test.yaml > "$here/etcd-alerts-test.yaml"
echo "rendered into $here"
