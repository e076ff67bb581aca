"""The RTL target: a Verilog int8 forward-pass accelerator with on-chip seed-SGD (docs/rtl.md).

* ``*.v`` - the design (Verilog-2005: Verilator, Icarus, yosys);
* :mod:`.reference` - the bit-exact Python model of what the design computes;
* :mod:`.build` - Verilator / Icarus builds, the ``rtl`` firmware, the yosys report;
* :mod:`.bus` - the design's command bus from Python (ctypes over the Verilator model).
"""

from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent
SOURCES = ("ez_accel.v", "ez_hash.v", "ez_requant.v")
TOP = "ez_accel"
