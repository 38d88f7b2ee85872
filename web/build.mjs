// Bundles web/src/markdown.js and the libraries web/package-lock.json pins into
// functions/streamfn/static/markdown.js, an ES module the chat page imports.
//
//   node web/build.mjs          write the bundle (make bundle)
//   node web/build.mjs --check  exit 1 if the committed bundle is not what this build makes
//
// To move a library on: `npm install --prefix web --save-exact marked@VERSION` (which rewrites
// package.json and package-lock.json), then `make bundle`, and commit all three.
//
// The same esbuild, the same sources and these options give the same bytes on any machine:
// no timestamps, no absolute paths, no source map. The bundled libraries' licences go beside
// it, in markdown.js.LICENSES.txt, which its first line names.
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const OUT = here("../functions/streamfn/static/markdown.js");
const LICENSES = `${OUT}.LICENSES.txt`;
// Every package the bundle carries, with the licence file each ships (DOMPurify's is a choice
// of two; we take Apache-2.0).
const BUNDLED = [
  ["marked", "LICENSE"],
  ["dompurify", "LICENSE"],
  ["highlight.js", "LICENSE"],
];

async function licences() {
  const parts = [];
  for (const [name, file] of BUNDLED) {
    const meta = JSON.parse(await readFile(here(`node_modules/${name}/package.json`), "utf8"));
    const text = await readFile(here(`node_modules/${name}/${file}`), "utf8");
    parts.push(`${meta.name} ${meta.version}, licence: ${meta.license}\n\n${text.trim()}\n`);
  }
  const names = BUNDLED.map(([name]) => name).join(", ");
  return { names, text: parts.join(`\n${"-".repeat(72)}\n\n`) };
}
const { names, text: licenceText } = await licences();

const result = await esbuild.build({
  absWorkingDir: here("."),
  entryPoints: ["src/markdown.js"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome105", "firefox110", "safari16"],
  minify: true,
  legalComments: "none", // all of them, whole, in LICENSES
  charset: "utf8",
  banner: {
    js:
      "// Built from web/src/markdown.js by web/build.mjs (make bundle): edit those, not this.\n" +
      `// Bundles ${names}: their licences are in markdown.js.LICENSES.txt.`,
  },
  write: false,
  logLevel: "warning",
});
const outputs = [
  [OUT, Buffer.from(result.outputFiles[0].contents)],
  [LICENSES, Buffer.from(licenceText)],
];

if (process.argv.includes("--check")) {
  for (const [path, built] of outputs) {
    const committed = await readFile(path).catch(() => Buffer.alloc(0));
    if (!built.equals(committed)) {
      console.error(`${path} is not what web/ builds: run \`make bundle\` and commit it`);
      process.exitCode = 1;
    }
  }
} else {
  for (const [path, built] of outputs) {
    await writeFile(path, built);
    console.log(`wrote ${path} (${built.length} bytes)`);
  }
}
