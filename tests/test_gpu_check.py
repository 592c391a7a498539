"""bench/gpu_check.sh --smoke: the GPU check's every section runs on the CPU (tiny SDXL and CLIP) and prints one
JSON with numbers or a stated reason; the injected out-of-memory error is recovered from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("sdxl_eager", "nan_check", "clip_text", "clip_images", "oom_recovery", "decode_peak",
            "preview_overhead", "lora", "llama_cpp", "sdxl_compiled")
NUMBERS = {  # what each section must report when it ran
    "sdxl_eager": ("studio_vs_raw",), "nan_check": ("image_std",), "clip_text": ("prompts_per_s",),
    "clip_images": ("images_per_s",), "oom_recovery": ("same_seed_max_pixel_diff",),
    "preview_overhead": ("overhead",), "lora": ("fused_median_s", "first_job_load_and_fuse_s", "no_lora_s"),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu-check") / "smoke.json"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--smoke", "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=170)
    assert out.is_file(), f"no JSON written (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    assert json.loads(proc.stdout) == data  # stdout is the one JSON, the log went to stderr
    return data, proc


def test_smoke_reports_every_section_with_numbers_or_a_reason(smoke):
    data, proc = smoke
    assert data["mode"] == "smoke" and data["complete"] is True
    assert set(data["sections"]) == set(SECTIONS)
    for name in SECTIONS:
        section = data["sections"][name]
        if section["status"] == "skipped":
            assert section.get("reason"), f"{name}: skipped without a reason"
            continue
        # Errors in sections built on the lead's issue-21 interfaces fail here until main is merged.
        assert section["status"] in {"ok", "failed"}, f"{name}: {section.get('error')}\n{section.get('where')}"
        for key in NUMBERS.get(name, ()):
            assert isinstance(section[key], (int, float)), f"{name}.{key} = {section.get(key)!r}"
    # On the CPU these two say why they have no number; the GPU run measures them.
    assert data["sections"]["decode_peak"]["status"] == "skipped" and data["sections"]["decode_peak"].get("n1") is None
    assert data["sections"]["sdxl_compiled"]["status"] == "skipped"
    assert data["sections"]["nan_check"]["status"] == "ok" and data["sections"]["nan_check"]["passed"] is True
    assert proc.returncode == 0, proc.stderr[-2000:]  # every section ok or skipped, and a clean exit


def test_smoke_recovers_from_an_injected_out_of_memory_error(smoke):
    # Needs issue 21's recovery (studio.errors.GpuMemoryError, the VAE put back to fp16) from main.
    oom = smoke[0]["sections"]["oom_recovery"]
    assert oom["injected"] is True
    assert oom["raised_gpu_memory_error"] or oom["recovered_within_the_job"], oom.get("raised")
    assert oom["same_seed_max_pixel_diff"] == 0 and oom["passed"] is True, oom
