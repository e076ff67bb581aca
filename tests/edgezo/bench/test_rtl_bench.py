"""``edgezo bench rtl`` is registered; its plot draws from the goals; the M4 filter skips only the UART polling."""

from __future__ import annotations

from pathlib import Path

from edgezo import bench


def test_rtl_bench_is_registered_with_its_case_counts():
    assert "rtl" in bench.available()
    module = bench.load("rtl")
    import argparse

    p = argparse.ArgumentParser()
    module.add_arguments(p)
    args = p.parse_args([])
    assert args.cases >= 10_000 and args.draws >= 1_000


def test_rtl_bench_plot(tmp_path: Path):
    module = bench.load("rtl")
    result = {"goals": {"rtl_steps_per_s_at_clock": 13.4, "m4_steps_per_s_at_25mhz": 1.25},
              "ice40": {"luts": 2600, "ffs": 1700, "bram": 20, "dsp": 0}}
    module.plot(result, tmp_path / "rtl.png")
    assert (tmp_path / "rtl.png").stat().st_size > 1000


def test_m4_filter_excludes_exactly_the_polling_functions(tmp_path, monkeypatch):
    from edgezo.bench import rtl_m4

    class Done:
        stdout = "000000ac 0000001e t uart_send\n000000cc 00000038 T main\n000005e8 000008dc T ez_device_feed\n"

    monkeypatch.setattr(rtl_m4.subprocess, "run", lambda *a, **k: Done())
    assert rtl_m4._ranges(tmp_path / "fw.elf") == "0x0..0xab,0xca..0xcb,0x104..0xffffffff"
