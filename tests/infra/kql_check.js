// Parses and binds KQL queries with the Kusto language service, offline, against declared table
// schemas. Input (stdin): {"tables": {"name": "(col:type, ...)"}, "queries": {"id": "text"}}.
// Output (stdout): {"id": {"diagnostics": ["Error: message @offset", ...], "columns": {"name": "type"}}}:
// no diagnostics means the query parses and binds; columns are those of its result.
"use strict";
const path = require("path");
const service = path.join(process.argv[2], "node_modules", "@kusto", "language-service-next");
require(path.join(service, "bridge.js"));
require(path.join(service, "Kusto.Language.Bridge.js"));

const K = Kusto.Language;
const S = K.Symbols;
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tables = Object.entries(input.tables).map(([name, schema]) => new S.TableSymbol.$ctor7(name, schema, null));
const globals = K.GlobalState.Default.WithDatabase(new S.DatabaseSymbol.ctor("monitor", tables));

const report = {};
for (const [id, text] of Object.entries(input.queries)) {
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  const diagnostics = code.GetDiagnostics();
  const entry = { diagnostics: [], columns: {} };
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    entry.diagnostics.push(`${d.Severity}: ${d.Message} @${d.Start}`);
  }
  const result = code.ResultType;
  if (result instanceof S.TableSymbol) {
    for (let i = 0; i < result.Columns.Count; i++) {
      const column = result.Columns.getItem(i);
      entry.columns[column.Name] = column.Type.Name;
    }
  }
  report[id] = entry;
}
process.stdout.write(JSON.stringify(report));
