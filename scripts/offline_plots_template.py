"""The page template that makes `dvc plots show` work with the network off.

DVC's default page loads Vega, Vega-Lite and vega-embed from a CDN, so offline it draws nothing.
This writes `.dvc/plots/offline.html` (named by `plots.html_template` in `.dvc/config`): the same
three libraries, at the versions dvc-render itself loads, inlined from their npm packages.

    python scripts/offline_plots_template.py        # needs `npm` and the npm registry, once

The result is committed, so users need neither npm nor a network.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

#: (npm package, version, file in the package): dvc_render/vega.py's CDN script tags.
LIBRARIES = [
    ("vega", "5.20.2", "build/vega.min.js"),
    ("vega-lite", "5.2.0", "build/vega-lite.min.js"),
    ("vega-embed", "6.18.2", "build/vega-embed.min.js"),
]
TEMPLATE = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"

#: dvc-render's page, with the libraries where its CDN tags were ({scripts} is left out, so that
#: DVC adds none); DVC fills {refresh_tag} and {plot_divs} by plain replacement.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Vega, Vega-Lite and vega-embed (BSD-3-Clause, University of Washington Interactive Data
         Lab), inlined by scripts/offline_plots_template.py so that the page needs no network. -->
LIBRARIES_HERE
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def library_source(package: str, version: str, member: str, folder: Path) -> str:
    """One file of an npm package, fetched with `npm pack`."""
    subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=folder, check=True, capture_output=True)
    with tarfile.open(folder / f"{package}-{version}.tgz") as archive:
        return archive.extractfile(f"package/{member}").read().decode()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        scripts = "\n".join(
            f"<script>/* {package} {version} */\n{library_source(package, version, member, Path(folder))}\n</script>"
            for package, version, member in LIBRARIES
        )
    TEMPLATE.write_text(PAGE.replace("LIBRARIES_HERE", scripts))
    print(f"{TEMPLATE}: {TEMPLATE.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
