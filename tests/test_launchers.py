"""Sweeps through Hydra's cluster launchers: a real Ray head on 127.0.0.1 and
submitit's local executor, compared with the same sweep run locally."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from npdl.io import load_json
from test_sweepers import SPACE, data_dir, leaderboard, run_sweep  # noqa: F401 (fixture)

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="needs the [ray] extra")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the [slurm] extra")

pytestmark = pytest.mark.slow
RANDOM_SEARCH = ("npdl_random", "hydra.sweeper.n_trials=4", *SPACE)
KEEP = ("rank", "overrides", "val_acc", "epochs", "status")


def same_leaderboard(one: list[dict], two: list[dict]) -> None:
    assert [{k: r[k] for k in KEEP} for r in one] == [{k: r[k] for k in KEEP} for r in two]
    # Jobs on one CPU run BLAS on one thread, which sums float32 products in another
    # order than two threads: losses agree to float32 precision, not to the last bit.
    assert [float(r["val_loss"]) for r in one] == pytest.approx(
        [float(r["val_loss"]) for r in two], rel=1e-4
    )


@pytest.fixture(scope="module")
def local_leaderboard(data_dir, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("local")
    run_sweep(data_dir, tmp / "cache", tmp / "sweep", *RANDOM_SEARCH)
    return leaderboard(tmp / "sweep")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_processes(marker: str) -> list[str]:
    listed = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if marker in line and "ps -eo" not in line]


def test_random_search_on_a_ray_head_matches_the_local_search(
    data_dir,  # noqa: F811
    local_leaderboard,
    tmp_path,
):
    # Every Ray file goes here: a short path, as Ray's socket paths must stay under
    # 108 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="npdl-ray-", dir="/tmp"))
    home = tmp_path / "home"  # and nothing into the home directory
    home.mkdir()
    global_ray_tmp_existed = Path("/tmp/ray").exists()
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = free_port()
    address = f"127.0.0.1:{port}"
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    started = subprocess.run(
        [
            *ray,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={ray_tmp}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        out = run_sweep(
            data_dir,
            tmp_path / "cache",
            tmp_path / "sweep",
            *RANDOM_SEARCH,
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={address}",
            env=env,
        )
        assert "Ray Launcher is launching 4 jobs" in out
        same_leaderboard(leaderboard(tmp_path / "sweep"), local_leaderboard)
        # Each trial ran as a Ray task with one CPU, and so on one thread.
        jobs = sorted((tmp_path / "sweep").glob("*/metrics/train.json"))
        assert len(jobs) == 4 and {load_json(job)["threads"] for job in jobs} == {1}
    finally:
        stopped = subprocess.run(
            [*ray, "stop", "--force"], env=env, capture_output=True, text=True, check=False
        )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert ray_processes(str(ray_tmp)) == [], "Ray processes outlived `ray stop`"
    shutil.rmtree(ray_tmp)
    assert list(home.iterdir()) == [], "Ray wrote into the home directory"
    assert global_ray_tmp_existed or not Path("/tmp/ray").exists(), "Ray wrote /tmp/ray"


def test_random_search_through_submitit_local_matches_the_local_search(
    data_dir,  # noqa: F811
    local_leaderboard,
    tmp_path,
):
    out = run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "sweep",
        *RANDOM_SEARCH,
        "hydra/launcher=local_submitit",
    )
    assert "Submitit 'local' sweep output dir" in out
    same_leaderboard(leaderboard(tmp_path / "sweep"), local_leaderboard)
    # submitit kept each job's own log in the sweep folder.
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 4
    # Each job ran on the CPUs the launcher gave it (cpus_per_task: 1).
    jobs = sorted((tmp_path / "sweep").glob("*/metrics/train.json"))
    assert len(jobs) == 4 and {load_json(job)["threads"] for job in jobs} == {1}


def test_random_search_on_a_private_ray_matches_the_local_search(
    data_dir,  # noqa: F811
    local_leaderboard,
    tmp_path,
):
    ray_tmp = Path(tempfile.mkdtemp(prefix="npdl-ray-", dir="/tmp"))
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "NPDL_RAY_TMP": str(ray_tmp),
        "NPDL_RAY_CPUS": "2",
    }
    out = run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "sweep",
        *RANDOM_SEARCH,
        "hydra/launcher=ray_local",
        env=env,
    )
    assert "Ray Launcher is launching 4 jobs" in out
    same_leaderboard(leaderboard(tmp_path / "sweep"), local_leaderboard)
    # The sweep's Ray ended with it, and kept its files in NPDL_RAY_TMP.
    assert ray_processes(str(ray_tmp)) == [], "Ray processes outlived the sweep"
    assert any(ray_tmp.iterdir()) and list(home.iterdir()) == []
    shutil.rmtree(ray_tmp)
