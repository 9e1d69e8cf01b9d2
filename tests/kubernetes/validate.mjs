// Validates the custom resources in the YAML files named on the command line against their
// CRDs' schemas (the @kubernetes-models packages): types, required fields and enums. The core
// kinds are kubernetes-validate's; a custom resource of a group no package here knows fails.
// Prints a line per resource; exits 1 when any is invalid.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const packages = {
  "gateway.envoyproxy.io": "@kubernetes-models/envoy-gateway",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "security.istio.io": "@kubernetes-models/istio",
  "networking.istio.io": "@kubernetes-models/istio",
};
const core = /^(|apps|batch|policy|autoscaling|networking\.k8s\.io|rbac\.authorization\.k8s\.io)$/;

let failed = false;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const object = doc.toJS();
    if (!object) continue;
    const [group, version] = object.apiVersion.includes("/")
      ? object.apiVersion.split("/")
      : ["", object.apiVersion];
    const where = `${file}: ${object.kind}/${object.metadata?.name}`;
    if (core.test(group)) {
      console.log(`${where}: core`);
      continue;
    }
    try {
      const pkg = packages[group];
      if (!pkg) throw new Error(`no schema for the group ${group}`);
      const { [object.kind]: Model } = await import(`${pkg}/${group}/${version}/${object.kind}`);
      new Model(object).validate();
      console.log(`${where}: valid`);
    } catch (error) {
      failed = true;
      console.log(`${where}: invalid: ${error.message}`);
    }
  }
}
process.exit(failed ? 1 : 0);
