"""A Dask worker SIGKILLed mid-run shows in the run's log: its name and the tiles re-run."""

from __future__ import annotations

import os
import signal
import time

from distributed import Client, LocalCluster, wait

from terrawatch.tasks.core.lost_workers import LostWorkerLog


def _slow(i: int) -> int:
    time.sleep(1.5)
    return i * 2


def test_killed_worker_is_named_with_the_count_of_tasks_re_run():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        lines: list[str] = []
        with LostWorkerLog(client, lines.append, "tile") as lost:
            futures = client.map(_slow, range(6), pure=False)
            lost.track(futures)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if len(busy) == 2:
                    break
                time.sleep(0.05)
            victim = sorted(busy)[0]
            name = client.scheduler_info(n_workers=-1)["workers"][victim]["name"]
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            wait(futures, timeout=120)
            deadline = time.monotonic() + 30
            while not lines and time.monotonic() < deadline:
                time.sleep(0.05)
        assert client.gather(futures) == [i * 2 for i in range(6)]
    assert len(lines) == 1, lines
    assert f"Dask worker {name} ({victim}) lost" in lines[0]
    assert lost.lost[0][0] == str(name) and 1 <= lost.lost[0][1] <= 6
    assert f"{lost.lost[0][1]} tile(s)" in lines[0]
