"""Build the prebuilt index a Hugging Face Space ships: the shipped DiffusionDB sample embedded with the
real CLIP, written to data/space-index/store. launch.py copies it into an empty STUDIO_HOME on start
(studio.firstrun.use_prebuilt_store), so the Space is searchable at once instead of after the first-run ingest.

    .venv/bin/python -m studio models --download clip      # once, online: the CLIP weights
    .venv/bin/python scripts/build_space_index.py [--app-root /home/user/app]

Image records keep absolute file paths; --app-root rewrites this checkout's path to where the Space
runs the app (Hugging Face Spaces: /home/user/app), so the sample's images show there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.config import PROJECT_ROOT, Settings  # noqa: E402
from studio.firstrun import PREBUILT_STORE  # noqa: E402
from studio.studio import Studio  # noqa: E402


def relocate(studio: Studio, old_root: str, new_root: str) -> int:
    """Rewrite the `file` of every image record from this checkout to the Space's app folder."""
    records = [r for r in studio.store.get("images") if str(r.metadata.get("file") or "").startswith(old_root)]
    if records:
        studio.store.update_metadata("images", [r.id for r in records],
                                     [r.metadata | {"file": new_root + r.metadata["file"][len(old_root):]}
                                      for r in records])
    return len(records)


def main() -> int:
    ap = argparse.ArgumentParser(description="Build data/space-index/store from the shipped sample.")
    ap.add_argument("--app-root", default="/home/user/app", help="where the Space runs the app")
    ap.add_argument("--out", type=Path, default=PREBUILT_STORE)
    args = ap.parse_args()
    settings = Settings.from_env()
    home = Path(tempfile.mkdtemp(prefix="space-index-"))
    studio = Studio(settings.with_(home=home))
    print(f"CLIP: {settings.clip_model}; embedding the sample into {home / 'store'} ...", file=sys.stderr)
    for report in studio.ingest_sample():
        print(report.summary(), file=sys.stderr)
    moved = relocate(studio, str(PROJECT_ROOT), args.app_root.rstrip("/"))
    print(f"{moved} image paths now point into {args.app_root}", file=sys.stderr)
    del studio  # close the store before copying its files
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(home / "store", args.out)
    print(f"wrote {args.out}; commit it to the Space (git lfs track 'data/space-index/**')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
