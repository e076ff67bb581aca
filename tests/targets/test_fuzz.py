"""Fuzzing the device protocol: the C firmware under ASan + UBSan, and the Python simulator, over one corpus
(edgezo.targets.fuzz: extreme fields in valid frames, random mutations, byte-level damage)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from edgezo.targets.fuzz import check_simulator, corpus, write_corpus

FIRMWARE = Path(__file__).resolve().parents[2] / "targets" / "firmware"
SEED, RANDOM_SESSIONS = 0, 300


def build_fuzzer(build: Path) -> Path:
    """``make fuzz`` into ``build``; skips when gcc cannot build with the sanitizers."""
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc and make are needed for the firmware fuzz harness (apt-get install -y gcc make)")
    proc = subprocess.run(["make", "-s", "fuzz", f"BUILD={build}", "CC=gcc"], cwd=FIRMWARE, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0 and "asan" in proc.stderr.lower():
        pytest.skip(f"gcc cannot link the sanitizer runtimes here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    return build / "fuzz" / "edgezo-fuzz"


def run_fuzzer(exe: Path, files: list[Path]) -> subprocess.CompletedProcess:
    env = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    return subprocess.run([str(exe), *map(str, files)], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.firmware
def test_firmware_survives_the_corpus_under_sanitizers(tmp_path):
    exe = build_fuzzer(tmp_path / "build")
    files = write_corpus(tmp_path / "corpus", SEED, RANDOM_SESSIONS)
    proc = run_fuzzer(exe, files)
    report = proc.stdout + proc.stderr
    assert "runtime error" not in report and "Sanitizer" not in report, report[-4000:]
    assert proc.returncode == 0 and f"{len(files)} sessions" in proc.stdout, report[-4000:]


@pytest.mark.firmware
def test_the_harness_reports_a_memory_error(tmp_path):
    """The harness is not blind: a firmware with a planted out-of-bounds write fails it."""
    planted = tmp_path / "src"
    shutil.copytree(FIRMWARE, planted, ignore=shutil.ignore_patterns("build"))
    device = planted / "device.c"
    text = device.read_text()
    guard = ("    if (!range_ok(off, cnt))\n"
             "        return fail(E_ARG, \"write_weights: range outside the parameters\");\n")
    assert guard in text
    device.write_text(text.replace(guard, "", 1))
    build = tmp_path / "build"
    proc = subprocess.run(["make", "-s", "fuzz", f"BUILD={build}", "CC=gcc"], cwd=planted, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"cannot build the sanitized harness here: {proc.stderr.strip()[-300:]}")
    files = [p for p in write_corpus(tmp_path / "corpus", SEED, 0) if "write-off" in p.name]
    assert files
    proc = run_fuzzer(build / "fuzz" / "edgezo-fuzz", files)
    assert proc.returncode != 0 and "AddressSanitizer" in proc.stderr


def test_simulator_answers_every_frame_of_the_corpus():
    answered = sum(check_simulator(data) for _, data in corpus(SEED, RANDOM_SESSIONS))
    assert answered > 1000
