"""make_locked: builds into one directory run one at a time, across threads (separate lock opens)."""

import threading

from edgezo.targets.build_lock import make_locked


def test_two_builds_into_one_directory_do_not_interleave(tmp_path):
    log = tmp_path / "log"
    script = f"echo start >> {log}; sleep 0.3; echo end >> {log}"
    threads = [threading.Thread(target=make_locked, args=(["sh", "-c", script], tmp_path / "build"))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.read_text().split() == ["start", "end"] * 3
    assert (tmp_path / "build" / ".build.lock").exists()


def test_the_command_output_and_status_come_back(tmp_path):
    proc = make_locked(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
