#!/usr/bin/env python3
"""Renders the gridwatch Helm chart in many configurations and validates
every manifest.

Renderer: Helm's own engine, the Helm v4 Go SDK bundled in the
`helm-python-sdk` wheel (libhelm_c). It is what `helm template` and
`helm lint` run: the same template functions (Sprig and Helm's), the same
values merging, `.Files.Glob`, `fail`, `lookup` (empty offline) and
values.schema.json checking. No registry reachable here ships the helm
CLI for Linux.

For every scenario (a list of values files plus inline overrides):
1. `helm lint --strict` with those values: no error, no warning;
2. values.schema.json accepts the values;
3. render; every manifest parses as YAML;
4. every built-in kind validates against the Kubernetes OpenAPI schemas
   (kubernetes-validate, strict: unknown fields are errors) for the oldest
   and the newest Kubernetes the chart claims to support;
5. prometheus-operator kinds validate against the operator's API schema
   (validate_crds.mjs, node);
6. cross-checks no schema can express: references resolve (ConfigMaps,
   Secrets and their keys, volumes, ports), selectors select, the config the
   pods read is what the values say (fluvio.instances = replicas,
   http.listen on 0.0.0.0:8080 with an admin token file that is mounted),
   probes, resources, security context, service links off, hooks, one
   connector Deployment per enabled sink in Fluvio's connector format, one
   dashboard ConfigMap per dashboards/*.json with the sidecar label.

Scenarios that must fail (bad values) are rendered too and must be refused
with a message naming the key.

Usage: validate_chart.py [REPO_ROOT]. Prints a summary line
"chart: N scenarios, M manifests validated, ..." and exits non-zero on any
problem.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
CHART = ROOT / "k8s/gridwatch"
EXAMPLES = ROOT / "k8s/examples"
RELEASE, NAMESPACE = "gridwatch", "grid"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
SECRET_KEYS = {"admin-token", "registry-password", "influxdb-token", "s3-access-key-id", "s3-secret-access-key", "kafka-sasl-password"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

problems: list[str] = []


def problem(scenario: str, msg: str) -> None:
    problems.append(f"[{scenario}] {msg}")


def deep_merge(base: dict, over: dict) -> dict:
    """Helm's merge of several -f files: maps merge, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_values(files: list[str], overrides: dict) -> dict:
    values: dict = {}
    for f in files:
        values = deep_merge(values, yaml.safe_load((ROOT / f).read_text()) or {})
    return deep_merge(values, overrides)


def effective(values: dict) -> dict:
    """The values the templates see: chart defaults with the user's on top."""
    return deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)


def render(chart_dir: Path, values: dict) -> dict[str, str]:
    with helm.Chart.load(str(chart_dir)) as chart:
        chart.validate_schema(values)
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def pod_specs(obj: dict) -> list[tuple[str, dict, dict]]:
    """(name, pod template metadata, pod spec) of a workload."""
    kind = obj.get("kind")
    if kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"):
        t = obj["spec"]["template"]
        return [(f"{kind}/{obj['metadata']['name']}", t.get("metadata", {}), t["spec"])]
    if kind == "Job":
        t = obj["spec"]["template"]
        return [(f"Job/{obj['metadata']['name']}", t.get("metadata", {}), t["spec"])]
    return []


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_scenario(name: str, values: dict, docs: list[dict], manifests: dict[str, str]) -> None:
    v = effective(values)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    fullname = f"{RELEASE}" if "gridwatch" in RELEASE else f"{RELEASE}-gridwatch"

    for d in docs:
        n = d["metadata"]["name"]
        if len(n) > 63 or not DNS_LABEL.match(n):
            problem(name, f"{d['kind']}/{n}: name is not a DNS label (63 chars, [a-z0-9-])")
        labels = d["metadata"].get("labels", {})
        for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"):
            if k not in labels:
                problem(name, f"{d['kind']}/{n}: label {k} missing")

    secret_names = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
    chart_secret = next((d for d in by_kind.get("Secret", [])), None)
    chart_secret_keys = set((chart_secret or {}).get("stringData", {}) or {}) | set((chart_secret or {}).get("data", {}) or {})
    existing = v["secrets"]["existingSecret"]
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}

    def secret_key_ok(secret: str, key: str) -> bool:
        if existing and secret == existing:
            return key in SECRET_KEYS or key == v["registry"]["auth"]["passwordKey"]
        return secret in secret_names and key in chart_secret_keys

    # --- Every pod: references, probes, resources, security -----------------
    for d in docs:
        for wname, meta, spec in pod_specs(d):
            if spec.get("enableServiceLinks") is not False:
                problem(name, f"{wname}: enableServiceLinks must be false (service env vars GRIDWATCH_* would be read as config keys)")
            psc = spec.get("securityContext", {})
            if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
                problem(name, f"{wname}: pod must run as a numeric non-root user")
            volumes = {vol["name"]: vol for vol in spec.get("volumes", [])}
            for vol in volumes.values():
                if "configMap" in vol and vol["configMap"]["name"] not in configmaps:
                    problem(name, f"{wname}: volume {vol['name']} names ConfigMap {vol['configMap']['name']}, not rendered")
                if "secret" in vol:
                    sn = vol["secret"]["secretName"]
                    if sn not in secret_names and sn not in (existing, v["fluvio"]["tls"]["existingSecret"]):
                        problem(name, f"{wname}: volume {vol['name']} names Secret {sn}, neither rendered nor given in values")
            claim_templates = {c["metadata"]["name"] for c in d.get("spec", {}).get("volumeClaimTemplates", [])}
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                cname = f"{wname}/{c['name']}"
                res = c.get("resources", {})
                if not res.get("requests") or not res.get("limits", {}).get("memory"):
                    problem(name, f"{cname}: needs resource requests and a memory limit")
                sc = c.get("securityContext", {})
                if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem"):
                    problem(name, f"{cname}: must not escalate privileges and must have a read-only root filesystem")
                mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
                for m in mounts.values():
                    if m["name"] not in volumes and m["name"] not in claim_templates:
                        problem(name, f"{cname}: mount {m['mountPath']} names volume {m['name']}, which the pod lacks")
                if "/tmp" not in mounts:
                    problem(name, f"{cname}: read-only root filesystem needs a writable /tmp")
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref and not secret_key_ok(ref["name"], ref["key"]):
                        problem(name, f"{cname}: env {e['name']} reads key {ref['key']} of Secret {ref['name']}, which is not there")
                    if e["name"].startswith("GRIDWATCH_LOG") or e["name"] in ("GRIDWATCH_PORT", "GRIDWATCH_CONFIG"):
                        problem(name, f"{cname}: env {e['name']} would be read as an unknown config key")
                ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    p = c.get(probe)
                    if p and "httpGet" in p and p["httpGet"]["port"] not in ports and p["httpGet"]["port"] not in ports.values():
                        problem(name, f"{cname}: {probe} port {p['httpGet']['port']} is not a container port")
                # Files the config points at must be mounted.
                cfg_mount = mounts.get("/etc/gridwatch/gridwatch.yaml")
                if cfg_mount:
                    cm = configmaps.get(volumes[cfg_mount["name"]]["configMap"]["name"])
                    cfg = yaml.safe_load(cm["data"][cfg_mount["subPath"]])
                    check_config(name, cname, v, cfg, mounts, volumes, secret_key_ok, d.get("kind"))

    # --- The pipeline StatefulSet --------------------------------------------
    sts = by_kind.get("StatefulSet", [])
    if len(sts) != 1:
        problem(name, f"expected one StatefulSet, found {len(sts)}")
    else:
        s = sts[0]
        if s["spec"]["replicas"] != v["pipeline"]["replicas"]:
            problem(name, f"StatefulSet replicas {s['spec']['replicas']} != pipeline.replicas {v['pipeline']['replicas']}")
        tmpl_labels = s["spec"]["template"]["metadata"]["labels"]
        if not selects(s["spec"]["selector"]["matchLabels"], tmpl_labels):
            problem(name, "StatefulSet selector does not select its own pods")
        if ("Service", s["spec"]["serviceName"]) not in names:
            problem(name, f"StatefulSet serviceName {s['spec']['serviceName']} is not a rendered Service")
        c = s["spec"]["template"]["spec"]["containers"][0]
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            problem(name, "pipeline liveness probe must GET /healthz")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problem(name, "pipeline readiness probe must GET /readyz")
        if {"name": "http", "containerPort": 8080, "protocol": "TCP"} not in c.get("ports", []):
            problem(name, "pipeline must expose port 8080 named http")
        if c["args"][:3] != ["run", "--config", "/etc/gridwatch/gridwatch.yaml"]:
            problem(name, f"pipeline args {c['args']}")
        if "checksum/config" not in s["spec"]["template"]["metadata"].get("annotations", {}):
            problem(name, "pipeline pods must carry the config checksum (so a replica change rolls them all)")
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if selects(p["spec"]["selector"]["matchLabels"], tmpl_labels)]
        if v["pipeline"]["pdb"]["enabled"] and len(pdbs) != 1:
            problem(name, f"expected one PodDisruptionBudget over the pipeline pods, found {len(pdbs)}")

    # --- Services select pods and name their ports ----------------------------
    pods = [(wname, meta.get("labels", {}), spec) for d in docs for wname, meta, spec in pod_specs(d) if d["kind"] != "Job"]
    for svc in by_kind.get("Service", []):
        matched = [p for p in pods if selects(svc["spec"]["selector"], p[1])]
        if not matched:
            problem(name, f"Service/{svc['metadata']['name']} selects no pods")
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort")
            for wname, _, spec in matched:
                cports = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                if isinstance(tp, str) and tp not in cports:
                    problem(name, f"Service/{svc['metadata']['name']} targets port {tp}, which {wname} lacks")

    # --- Connectors: one per enabled sink in connectors mode -----------------
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for sink in ("kafka", "influxdb", "lake"):
        dname = f"{fullname}-connector-{sink}"
        want = v["sinks"]["mode"] == "connectors" and v["sinks"][sink]["enabled"]
        if want != (dname in deployments):
            problem(name, f"connector {sink}: Deployment {'missing' if want else 'rendered though the sink is off'}")
        if want and dname in deployments:
            c = deployments[dname]["spec"]["template"]["spec"]["containers"][0]
            if c["args"][:4] != ["connector", "run", "--config", "/etc/gridwatch/connector.yaml"]:
                problem(name, f"connector {sink}: args {c['args']}")
            conf = yaml.safe_load(configmaps[dname]["data"]["connector.yaml"])
            meta = conf.get("meta", {})
            if conf.get("apiVersion") not in ("0.1.0", "0.2.0") or not all(meta.get(k) for k in ("name", "type", "topic", "version")):
                problem(name, f"connector {sink}: not in Fluvio's connector format (apiVersion, meta.name/type/topic/version): {conf}")
            if not meta.get("type", "").endswith("-sink"):
                problem(name, f"connector {sink}: meta.type must end in -sink (Fluvio derives the direction from it)")
            if sink not in conf:
                problem(name, f"connector {sink}: no `{sink}:` section")
            extra = set(conf) - {"apiVersion", "meta", "transforms", sink}
            if extra:
                problem(name, f"connector {sink}: unexpected top-level keys {extra}")
            if any(isinstance(x, str) and ("secret" in k.lower() or k in ("token", "password")) and "file" not in k for k, x in _walk(conf)):
                problem(name, f"connector {sink}: a secret is inline in the connector config")
            if sink == "kafka" and not (isinstance(conf[sink].get("brokers"), list) and conf[sink]["brokers"]):
                problem(name, f"connector kafka: brokers must be a non-empty list, is {conf[sink].get('brokers')!r}")
            # `gridwatch connector run` refuses transforms it does not know.
            for t in conf.get("transforms") or []:
                if t.get("uses", "").split("@")[0] not in ("gridwatch/severity-filter",):
                    problem(name, f"connector {sink}: transform {t.get('uses')!r} is not one gridwatch connector run knows")
            # With the embedded log the topic is read through the pipeline's API.
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            want_url = f"http://{fullname}:{v['service']['port']}"
            if v["backend"] == "embedded" and env.get("GRIDWATCH_URL") != want_url:
                problem(name, f"connector {sink}: GRIDWATCH_URL = {env.get('GRIDWATCH_URL')!r}, want {want_url!r} with the embedded backend")
            # Secret files the connector config names are mounted, with that key.
            pod = deployments[dname]["spec"]["template"]["spec"]
            vols = {vol["name"]: vol for vol in pod["volumes"]}
            cmounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            for key, path in _walk(conf):
                if key.endswith("_file"):
                    mount = next((m for mp, m in cmounts.items() if path.startswith(mp.rstrip("/") + "/")), None)
                    sec = vols.get(mount["name"], {}).get("secret") if mount else None
                    fname = path[len(mount["mountPath"].rstrip("/")) + 1 :] if mount else ""
                    if sec is None or not secret_key_ok(sec["secretName"], fname):
                        problem(name, f"connector {sink}: {key} = {path} is not a mounted Secret key")

    # --- The registration hook Job --------------------------------------------
    jobs = by_kind.get("Job", [])
    want_publish = v["backend"] == "fluvio"
    want_register = bool(v["registry"]["url"])
    if v["register"]["enabled"] and (want_publish or want_register):
        if len(jobs) != 1:
            problem(name, f"expected the registration Job, found {len(jobs)} Jobs")
        else:
            j = jobs[0]
            ann = j["metadata"].get("annotations", {})
            if "pre-install" not in ann.get("helm.sh/hook", "") or "pre-upgrade" not in ann.get("helm.sh/hook", ""):
                problem(name, "registration Job must be a pre-install,pre-upgrade hook")
            spec = j["spec"]["template"]["spec"]
            steps = [c["args"][:2] for c in spec.get("initContainers", []) + spec["containers"]]
            expected = ([["modules", "publish"]] if want_publish else []) + ([["registry", "register"]] if want_register else [])
            if steps != expected:
                problem(name, f"registration Job steps {steps}, expected {expected}")
            # Whatever the hook mounts must itself exist before regular resources.
            for vol in spec.get("volumes", []):
                kind = "ConfigMap" if "configMap" in vol else "Secret" if "secret" in vol else None
                ref = vol.get("configMap", {}).get("name") or vol.get("secret", {}).get("secretName")
                target = next((d for d in docs if d["metadata"]["name"] == ref and d["kind"] == kind), None)
                if target is not None and "helm.sh/hook" not in target["metadata"].get("annotations", {}):
                    problem(name, f"registration Job mounts {target['kind']}/{ref}, which is not a hook and does not exist yet at pre-install")
            if spec.get("serviceAccountName"):
                problem(name, "registration Job names a ServiceAccount that does not exist at pre-install")
    elif jobs:
        problem(name, "registration Job rendered with nothing to register")

    # --- ServiceMonitor ---------------------------------------------------------
    sms = by_kind.get("ServiceMonitor", [])
    if v["serviceMonitor"]["enabled"] != bool(sms):
        problem(name, f"ServiceMonitor {'missing' if v['serviceMonitor']['enabled'] else 'rendered though disabled'}")
    for sm in sms:
        eps = sm["spec"]["endpoints"]
        if not any(e.get("interval") == "5s" and e.get("path") == "/metrics" for e in eps) and v["serviceMonitor"]["interval"] == "5s":
            problem(name, "ServiceMonitor must scrape /metrics every 5s")
        scraped = [s for s in by_kind.get("Service", []) if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        want_scraped = 1 + sum(1 for s in ("kafka", "influxdb", "lake") if v["sinks"][s]["enabled"] and v["sinks"]["mode"] == "connectors")
        if len(scraped) != want_scraped:
            problem(name, f"ServiceMonitor selects {len(scraped)} Services, expected {want_scraped} (pipeline + connectors)")
        for s in scraped:
            if not any(p["name"] == e["port"] for p in s["spec"]["ports"] for e in eps):
                problem(name, f"ServiceMonitor port is not a named port of Service/{s['metadata']['name']}")
        for k, val in v["serviceMonitor"]["labels"].items():
            if sm["metadata"]["labels"].get(k) != val:
                problem(name, f"ServiceMonitor lacks label {k}={val}")

    # --- Dashboards ---------------------------------------------------------------
    dash = [d for d in by_kind.get("ConfigMap", []) if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    files = sorted((CHART / "dashboards").glob("*.json")) if v["dashboards"]["enabled"] else []
    if len(dash) != len(files):
        problem(name, f"{len(dash)} dashboard ConfigMaps for {len(files)} dashboards/*.json files")
    rendered = {k: val for d in dash for k, val in d["data"].items()}
    for f in files:
        if f.name not in rendered:
            problem(name, f"dashboard {f.name} has no ConfigMap")
        elif rendered[f.name].strip() != f.read_text().strip():
            problem(name, f"dashboard {f.name}: ConfigMap content differs from the file")
        else:
            json.loads(rendered[f.name])
    for d in dash:
        size = sum(len(x.encode()) for x in d["data"].values())
        if size > 1_000_000:
            problem(name, f"ConfigMap/{d['metadata']['name']}: {size} bytes, over the 1 MiB ConfigMap limit")


def _walk(obj, prefix=""):
    if isinstance(obj, dict):
        for k, x in obj.items():
            yield from _walk(x, k)
    elif isinstance(obj, list):
        for x in obj:
            yield from _walk(x, prefix)
    else:
        yield prefix, obj


def check_config(name, cname, v, cfg, mounts, volumes, secret_key_ok, kind) -> None:
    """The gridwatch config a container reads agrees with the values and with
    what the pod mounts."""
    if cfg.get("http", {}).get("listen") != "0.0.0.0:8080":
        problem(name, f"{cname}: http.listen must be 0.0.0.0:8080 in-cluster, is {cfg.get('http')}")
    token_file = cfg.get("admin", {}).get("token_file")
    if not token_file and not cfg.get("admin", {}).get("token"):
        problem(name, f"{cname}: listening on 0.0.0.0 needs admin.token or admin.token_file")
    for key, path in _walk(cfg):
        if key.endswith("_file") or key in ("ca_cert", "cert", "key"):
            mount = next((m for p, m in mounts.items() if path.startswith(p.rstrip("/") + "/")), None)
            if mount is None:
                problem(name, f"{cname}: config {key} = {path} is not under any mount")
                continue
            vol = volumes.get(mount["name"], {})
            if "secret" in vol:
                sname = vol["secret"]["secretName"]
                fname = path[len(mount["mountPath"].rstrip("/")) + 1 :]
                if sname != v["fluvio"]["tls"]["existingSecret"] and not secret_key_ok(sname, fname):
                    problem(name, f"{cname}: config {key} = {path}, but Secret {sname} has no key {fname}")
    if cfg.get("backend") != v["backend"]:
        problem(name, f"{cname}: backend {cfg.get('backend')} != {v['backend']}")
    if v["backend"] == "fluvio":
        f = cfg.get("fluvio", {})
        if f.get("instances") != v["pipeline"]["replicas"]:
            problem(name, f"{cname}: fluvio.instances {f.get('instances')} != pipeline.replicas {v['pipeline']['replicas']}")
        if f.get("partitions") != v["fluvio"]["partitions"]:
            problem(name, f"{cname}: fluvio.partitions {f.get('partitions')} != {v['fluvio']['partitions']}")
        if "instance" in f:
            problem(name, f"{cname}: fluvio.instance is fixed in a config shared by all replicas")
    if cfg.get("runtime", {}).get("modules_dir") != "/usr/share/gridwatch/modules":
        problem(name, f"{cname}: runtime.modules_dir must be the image's /usr/share/gridwatch/modules")
    if kind == "StatefulSet":
        sinks = cfg.get("sinks", {})
        for s in ("kafka", "influxdb", "lake"):
            want = v["sinks"]["mode"] == "inProcess" and v["sinks"][s]["enabled"]
            if want != (s in sinks):
                problem(name, f"{cname}: sinks.{s} {'missing' if want else 'present'} in the pipeline config")
        if v["registry"]["url"] and cfg.get("registry", {}).get("url") != v["registry"]["url"]:
            problem(name, f"{cname}: registry.url not passed on")
        for k, val in v.get("config", {}).items():
            if isinstance(val, dict):
                for k2, val2 in val.items():
                    if cfg.get(k, {}).get(k2) != val2:
                        problem(name, f"{cname}: config override {k}.{k2} not applied")


def validate_k8s(name: str, docs: list[dict]) -> tuple[int, list[dict]]:
    """Schema-validates built-in kinds; returns (count, custom resources)."""
    count, custom = 0, []
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            custom.append(d)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problem(name, f"{d['kind']}/{d['metadata']['name']} invalid for Kubernetes {version} at {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problem(name, f"{d['kind']}/{d['metadata']['name']}: no Kubernetes {version} schema for {d['apiVersion']}")
        count += 1
    return count, custom


def scenarios() -> list[tuple[str, list[str], dict]]:
    examples = sorted(str(p.relative_to(ROOT)) for p in EXAMPLES.glob("values-*.yaml"))
    every_sink = {
        "sinks": {
            "kafka": {"enabled": True, "brokers": "kafka:9092"},
            "influxdb": {"enabled": True, "url": "http://influxdb:8086", "token": "t", "org": "o", "bucket": "b"},
            "lake": {"enabled": True, "url": "s3://lake/gridwatch", "accessKeyId": "a", "secretAccessKey": "s"},
        }
    }
    out = [("defaults", [], {})]
    out += [(Path(e).stem, [e], {}) for e in examples]
    out += [
        ("replicas=3", [], {"pipeline": {"replicas": 3}}),
        ("replicas=3 partitions=12 monitored", [], {"pipeline": {"replicas": 3}, "fluvio": {"partitions": 12}, "serviceMonitor": {"enabled": True}}),
        ("all sinks as connectors", [], every_sink),
        ("all sinks in-process", [], deep_merge(every_sink, {"sinks": {"mode": "inProcess"}})),
        ("influxdb v1 + kafka sasl", [], {"sinks": {"influxdb": {"enabled": True, "url": "http://influx:8086", "api": "v1", "database": "grid"},
                                                      "kafka": {"enabled": True, "brokers": "k:9092", "sasl": {"enabled": True, "username": "u", "password": "p"}}}}),
        ("registry basic auth + existing secret", [], {"registry": {"url": "https://apicurio.example.com", "auth": {"type": "basic", "username": "gw"}}, "secrets": {"existingSecret": "mine"}}),
        ("fluvio tls + profile", [], {"fluvio": {"profile": "prod", "tls": {"enabled": True, "existingSecret": "fluvio-tls", "domain": "sc.example.com"}}}),
        ("mqtt source + config overrides", [], {"sources": {"mqtt": {"enabled": True, "url": "mqtt://broker:1883"}}, "config": {"runtime": {"max_lag": 5000}}}),
        ("no persistence, no pdb, no dashboards", [], {"pipeline": {"persistence": {"enabled": False}, "pdb": {"enabled": False}}, "dashboards": {"enabled": False}}),
        ("embedded, register off", [], {"backend": "embedded", "pipeline": {"replicas": 1}, "register": {"enabled": False}}),
        ("production + connector transforms", ["k8s/examples/values-production.yaml"], {"connectors": {"transforms": {"kafka": [{"uses": "gridwatch/severity-filter@0.1.0", "with": {"min_severity": "ERROR"}}]}}}),
        ("embedded + connectors", [], deep_merge(every_sink, {"backend": "embedded", "pipeline": {"replicas": 1}})),
    ]
    return out


MUST_FAIL = [
    ("embedded with 3 replicas", {"backend": "embedded", "pipeline": {"replicas": 3}}, "pipeline.replicas"),
    ("more replicas than partitions", {"pipeline": {"replicas": 8}, "fluvio": {"partitions": 4}}, "fluvio.partitions"),
    ("threshold out of range", {"detector": {"threshold": 5}}, "threshold"),
    ("misspelt top-level key", {"pipline": {"replicas": 3}}, "pipline"),
    ("kafka without brokers", {"sinks": {"kafka": {"enabled": True}}}, "sinks.kafka.brokers"),
    ("tls without a secret", {"fluvio": {"tls": {"enabled": True}}}, "fluvio.tls.existingSecret"),
    ("unknown backend", {"backend": "kafka"}, "backend"),
]


def main() -> int:
    total_manifests, total_custom = 0, []
    dashboards = sorted((ROOT / "dashboards").glob("*.json"))
    chart_dashboards = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    if [p.name for p in dashboards] != chart_dashboards:
        problems.append(f"k8s/gridwatch/dashboards ({chart_dashboards}) is not the repository's dashboards/ ({[p.name for p in dashboards]})")

    # With no dashboard in the repository yet, also render a copy of the chart
    # holding a sample one, so the dashboards template is exercised.
    tmp = Path(tempfile.mkdtemp(prefix="gridwatch-chart-"))
    sample_chart = tmp / "gridwatch"
    shutil.copytree(CHART, sample_chart, symlinks=False, ignore=shutil.ignore_patterns("dashboards"))
    (sample_chart / "dashboards").mkdir()
    for p in dashboards:
        shutil.copy(p, sample_chart / "dashboards" / p.name)
    (sample_chart / "dashboards" / "Sample Board_v2.json").write_text(json.dumps({"title": "sample", "panels": [], "schemaVersion": 39}, indent=2))

    runs = [(n, f, o, CHART) for n, f, o in scenarios()] + [("with a sample dashboard", [], {}, sample_chart)]
    for name, files, overrides, chart_dir in runs:
        values = load_values(files, overrides)
        lint = helm.lint(str(chart_dir), values, strict=True, namespace=NAMESPACE)
        for m in lint["messages"]:
            if m["severity"] >= 2:
                problem(name, f"helm lint: {m['path']}: {m['error']}")
        try:
            manifests = render(chart_dir, values)
        except helm.HelmError as e:
            problem(name, f"render failed: {e}")
            continue
        docs = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                continue
            for d in yaml.safe_load_all(text):
                if d:
                    docs.append(d)
        count, custom = validate_k8s(name, docs)
        if chart_dir == CHART:
            check_scenario(name, values, docs, manifests)
        else:
            # Only the dashboards matter for the sample-dashboard chart copy.
            dash = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
            if len(dash) != len(dashboards) + 1:
                problem(name, f"{len(dash)} dashboard ConfigMaps for {len(dashboards) + 1} files")
            for d in dash:
                if not DNS_LABEL.match(d["metadata"]["name"]):
                    problem(name, f"dashboard ConfigMap name {d['metadata']['name']} is not a DNS label")
        total_manifests += count + len(custom)
        total_custom += custom
        kinds = sorted({d["kind"] for d in docs})
        print(f"rendered {name}: {len(docs)} manifests ({', '.join(kinds)})")

    for name, overrides, key in MUST_FAIL:
        values = load_values([], overrides)
        try:
            render(CHART, values)
        except helm.HelmError as e:
            if key not in str(e):
                problem(name, f"refused, but the message does not name {key}: {e}")
            else:
                print(f"refused {name}: {str(e).strip().splitlines()[-1][:160]}")
            continue
        problem(name, "bad values rendered without error")

    # The dependency manifests shipped as examples are validated too.
    for dep in sorted(EXAMPLES.glob("deps/*.yaml")):
        docs = [d for d in yaml.safe_load_all(dep.read_text()) if d]
        if docs and all("apiVersion" in d and "kind" in d for d in docs):
            count, _ = validate_k8s(str(dep.relative_to(ROOT)), docs)
            total_manifests += count
            print(f"checked {dep.relative_to(ROOT)}: {count} manifests")

    crd_checked = 0
    if total_custom:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(total_custom, f)
        node = shutil.which("node")
        if node is None:
            problems.append("node is not installed: cannot validate ServiceMonitors (scripts/setup.d/40-deploy.sh installs it)")
        else:
            out = subprocess.run([node, str(ROOT / "tests/deploy/validate_crds.mjs"), f.name], capture_output=True, text=True)
            lines = out.stdout.strip().splitlines()
            crd_checked = sum(1 for line in lines if line.startswith("valid "))
            if out.returncode != 0:
                problems.append("prometheus-operator schema: " + (out.stdout + out.stderr).strip())
        os.unlink(f.name)

    shutil.rmtree(tmp, ignore_errors=True)
    for p in problems:
        print(f"problem: {p}")
    print(
        f"chart: {len(runs)} scenarios rendered with Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.helm_c_version()}), "
        f"{len(MUST_FAIL)} bad-value scenarios refused, {total_manifests} manifests validated "
        f"({total_manifests - len(total_custom)} against Kubernetes {' and '.join(K8S_VERSIONS)} schemas, "
        f"{crd_checked}/{len(total_custom)} ServiceMonitors against the prometheus-operator schema): "
        f"{'OK' if not problems else f'{len(problems)} problem(s)'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
