"""`python -m studio ...` as a user runs it: real subprocesses, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SAMPLE, SAMPLE_IMAGES


def run(*args: str, home: Path, clip: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "studio", *args, "--home", str(home), "--clip-model", str(clip)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_ingest_search_reverse_stats_json(tmp_path: Path, tiny_clip_dir: Path) -> None:
    home = tmp_path / "home"
    out = run("ingest", str(SAMPLE / "metadata-fullparams-promptsdvis-first99.csv"), "--json", home=home,
              clip=tiny_clip_dir)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["rows"] == 99 and report["prompts_new"] == 88
    assert "prompts" in out.stderr  # the tqdm bar goes to stderr, the JSON alone to stdout
    assert run("ingest", str(SAMPLE_IMAGES), home=home, clip=tiny_clip_dir).returncode == 0

    prompt = "a woman with red hair and glasses sits on top of a tall pile of books, reading."
    out = run("search", prompt, "--json", "-k", "3", home=home, clip=tiny_clip_dir)
    result = json.loads(out.stdout)
    assert len(result["results"]) == 3
    assert {"id", "prompt", "distance", "metadata"} <= result["results"][0].keys()
    assert result["results"][0]["prompt"].startswith(prompt)

    out = run("reverse", str(SAMPLE_IMAGES / "2m-part-000001_from-poloclub-example-loading.png"), "--json",
              home=home, clip=tiny_clip_dir)
    top = json.loads(out.stdout)["results"][0]
    assert top["settings"][0]["seed"] == 75054762 and top["settings"][0]["sampler"] == "k_lms"

    human = run("search", "a lighthouse", "--target", "images", "-k", "2", home=home, clip=tiny_clip_dir)
    assert human.returncode == 0 and " 1. [" in human.stdout and "image:" in human.stdout

    stats = json.loads(run("stats", "--json", home=home, clip=tiny_clip_dir).stdout)
    counts = {ix["kind"]: ix["count"] for ix in stats["indexes"]}
    assert counts == {"prompts": 91, "images": 3}


def test_errors_exit_2_with_a_message(tmp_path: Path, tiny_clip_dir: Path) -> None:
    out = run("ingest", str(tmp_path / "missing.csv"), home=tmp_path, clip=tiny_clip_dir)
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    out = run("search", "   ", "--json", home=tmp_path, clip=tiny_clip_dir)
    assert out.returncode == 2 and json.loads(out.stdout)["type"] == "InputError"
    out = subprocess.run([sys.executable, "-m", "studio", "search", "a castle", "--home", str(tmp_path),
                          "--clip-model", "openai/clip-vit-base-patch32"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=os.environ | {"STUDIO_MODELS_DIR": str(tmp_path / "m")})
    assert out.returncode == 2 and "python -m studio models --download clip" in out.stderr


def test_models_lists_every_role(tmp_path: Path, tiny_clip_dir: Path) -> None:
    out = run("models", "--json", home=tmp_path, clip=tiny_clip_dir)
    models = {m["role"]: m for m in json.loads(out.stdout)["models"]}
    assert set(models) == {"clip", "llm", "sdxl", "multilingual"}
    assert models["multilingual"]["unset"] and not models["multilingual"]["found"]  # off unless configured
    assert models["clip"]["found"] and models["clip"]["path"] == str(tiny_clip_dir.resolve())


def test_odd_tables_are_rc_2_or_typed_never_a_traceback(tmp_path: Path, tiny_clip_dir: Path) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    home = tmp_path / "home"
    prompts = ["a castle in the clouds, oil painting", "a fox in the snow, watercolor", "a robot, 3d render"]
    # A string part_id (today: "Unknown format code 'd'") and a seed that is not a number.
    pd.DataFrame({"prompt": prompts, "part_id": ["part-000003", "12", "x"], "seed": ["42", "x", "7.0"],
                  "cfg": ["7.5", "high", None]}).to_parquet(tmp_path / "strings.parquet")
    out = run("ingest", str(tmp_path / "strings.parquet"), "--json", home=home, clip=tiny_clip_dir)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["cells_left_out"] == 3  # part_id 'x', seed 'x', cfg 'high'
    assert "seed 'x' (row 2) is not a whole number" in report["summary"]
    out = run("search", prompts[0], "--json", "-k", "3", home=home, clip=tiny_clip_dir)
    metas = {r["prompt"]: r["metadata"] for r in json.loads(out.stdout)["results"]}
    assert metas[prompts[0]]["seed"] == 42 and metas[prompts[0]]["cfg"] == 7.5
    assert "seed" not in metas[prompts[1]] and "cfg" not in metas[prompts[1]]
    assert metas[prompts[2]]["seed"] == 7
    assert json.loads(metas[prompts[1]]["counts"]) == {"part-000012": 1}
    # Nested types: refused with a message that names the column.
    pq.write_table(pa.table({"prompt": prompts, "seed": [[1], [2], [3]]}), tmp_path / "nested.parquet")
    out = run("ingest", str(tmp_path / "nested.parquet"), home=home, clip=tiny_clip_dir)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "seed (list<" in out.stderr.lower()
    pq.write_table(pa.table({"prompt": [{"text": p} for p in prompts]}), tmp_path / "struct.parquet")
    out = run("ingest", str(tmp_path / "struct.parquet"), home=home, clip=tiny_clip_dir)
    assert out.returncode == 2 and "`prompt` column holds struct" in out.stderr


def test_a_store_folder_that_is_a_file_is_one_line_rc_2(tmp_path: Path, tiny_clip_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "store").write_text("not a folder")
    out = run("stats", home=home, clip=tiny_clip_dir)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
