// Validates an AsyncAPI document with the AsyncAPI initiative's parser; exits 1 on errors.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
// Severity 0 is an error; warnings and hints are printed but do not fail.
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  console.log(`${d.severity === 0 ? "error" : "note"}: ${d.code} ${d.path.join(".")} ${d.message}`);
}
if (!document || errors.length) {
  process.exit(1);
}
console.log(`ok: ${document.operations().length} operations`);
