// Validates rendered prometheus-operator resources against the operator's
// API schemas, as shipped in @kubernetes-models/prometheus-operator (compiled
// validators generated from monitoring.coreos.com/v1, the Go API types the
// operator's CRDs are generated from: required fields, types, enums and
// patterns such as the Duration format of `interval`).
//
//   node validate_crds.mjs OBJECTS.json
//
// OBJECTS.json is an array of objects. The node_modules folder is
// $GRIDWATCH_DEPLOY_NODE_MODULES, else $HOME/.cache/gridwatch/deploy-node/node_modules.
// Exit 0 when every object is valid, 1 otherwise. A known-bad object is
// checked first, so a validator that accepts everything fails the run.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules =
  process.env.GRIDWATCH_DEPLOY_NODE_MODULES ??
  join(process.env.HOME ?? "", ".cache/gridwatch/deploy-node/node_modules");
const load = async (kind) =>
  (await import(pathToFileURL(join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1", `${kind}.js`)).href))[kind];

const kinds = { ServiceMonitor: await load("ServiceMonitor"), PodMonitor: await load("PodMonitor"), PrometheusRule: await load("PrometheusRule") };

function check(obj) {
  const Model = kinds[obj.kind];
  if (!Model || obj.apiVersion !== "monitoring.coreos.com/v1") return `no schema for ${obj.apiVersion}/${obj.kind}`;
  try {
    new Model(obj).validate();
    return null;
  } catch (e) {
    return e.message;
  }
}

const bad = {
  apiVersion: "monitoring.coreos.com/v1",
  kind: "ServiceMonitor",
  metadata: { name: "bad" },
  spec: { selector: {}, endpoints: [{ port: "http", interval: "5 seconds" }] },
};
if (check(bad) === null) {
  console.error("the ServiceMonitor validator accepted a bad interval; it is not validating");
  process.exit(1);
}

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const obj of objects) {
  const err = check(obj);
  const name = `${obj.kind}/${obj.metadata?.name}`;
  if (err) {
    failed++;
    console.log(`INVALID ${name}: ${err}`);
  } else {
    console.log(`valid ${name} (monitoring.coreos.com/v1 schema)`);
  }
}
process.exit(failed ? 1 : 0);
