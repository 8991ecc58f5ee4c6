"""Claims on a run's steps (mona.claims): one holder at a time, in this process or another, released however
the holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from mona.claims import claim, held, holder

HOLD = """
import sys, time
from mona.claims import claim
with claim(sys.argv[1]) as mine:
    print("held" if mine else "refused", flush=True)
    time.sleep(60)
"""


def test_one_holder_at_a_time_and_the_file_names_it(tmp_path):
    path = tmp_path / "step" / ".claim"
    assert not held(path) and not path.exists()  # asking creates nothing
    with claim(path) as first:
        assert first and held(path)
        with claim(path) as second:
            assert not second
        assert holder(path).startswith(f"pid {os.getpid()} on ")
    assert not held(path)
    with claim(path) as again:  # released when the block ended
        assert again


def test_wait_takes_the_claim_once_it_is_released(tmp_path):
    path = tmp_path / ".claim"
    taken_at: list[float] = []

    def waiter() -> None:
        with claim(path, wait=True) as mine:
            assert mine
            taken_at.append(time.monotonic())

    with claim(path):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)
        assert not taken_at  # still waiting while this block holds the claim
        released = time.monotonic()
    thread.join(10)
    assert taken_at and taken_at[0] >= released


def test_a_killed_holder_leaves_no_stale_claim(tmp_path):
    path = tmp_path / ".claim"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with claim(path) as mine:
            assert not mine
        assert holder(path).startswith(f"pid {proc.pid} ")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with claim(path) as mine:  # the OS dropped the lock with the process
        assert mine
