"""edgezo.distributed: leaving_process_group frees the group on both exits (one gloo rank, in a fresh interpreter)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import torch.distributed as dist
    from edgezo.distributed import init_process_group, leaving_process_group

    init = "file://" + sys.argv[1]
    init_process_group("gloo", init_method=init + "-ok", rank=0, world_size=1)
    with leaving_process_group():
        dist.barrier()
    print("after success:", dist.is_initialized())
    init_process_group("gloo", init_method=init + "-err", rank=0, world_size=1)
    try:
        with leaving_process_group():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        print("interrupt passed on; after error:", dist.is_initialized())
""")


@pytest.mark.distributed
def test_leaving_frees_the_group_after_success_and_after_an_error(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "rendezvous")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["after success: False", "interrupt passed on; after error: False"]
