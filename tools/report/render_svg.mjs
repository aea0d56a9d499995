// Renders Vega-Lite chart specs to SVG with the same libraries the report pages inline, so a
// chart in a page and its SVG file come from one spec.
//   node render_svg.mjs SPEC.json OUT.svg [SPEC.json OUT.svg ...]
// Exits 1 naming the spec when one cannot be compiled or rendered.
import {readFileSync, writeFileSync} from 'node:fs';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) {
    console.error('usage: node render_svg.mjs SPEC.json OUT.svg [SPEC.json OUT.svg ...]');
    process.exit(2);
}
for (let i = 0; i < args.length; i += 2) {
    const [specFile, outFile] = [args[i], args[i + 1]];
    try {
        const spec = JSON.parse(readFileSync(specFile, 'utf8'));
        const compiled = vegaLite.compile(spec).spec;
        const view = new vega.View(vega.parse(compiled), {renderer: 'none'});
        writeFileSync(outFile, await view.toSVG());
        view.finalize();
    } catch (error) {
        console.error(`${specFile}: ${error.message}`);
        process.exit(1);
    }
}
