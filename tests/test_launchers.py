"""Sweeps through Hydra's cluster launchers: a real Ray head on 127.0.0.1 and
submitit's local executor, compared with the same sweep run locally."""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from npdl.io import load_json
from test_sweepers import (  # noqa: F401 (fixture)
    ROOT,
    SPACE,
    data_dir,
    leaderboard,
    run_sweep,
    sweep_args,
)

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


def ray_command(*args: str, env: dict, umask: int = -1) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        umask=umask,
    )


def failed_sweep(*args, env: dict) -> str:
    """Run a sweep expected to fail; return its stderr."""
    result = subprocess.run(
        sweep_args(*args), capture_output=True, text=True, check=False, cwd=ROOT, env=env
    )
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stderr


def test_random_search_on_a_token_authenticated_ray_head_matches_the_local_search(
    data_dir,  # noqa: F811
    local_leaderboard,
    tmp_path,
):
    # Every Ray file goes here: a short path, as Ray's socket paths must stay under
    # 108 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="npdl-ray-", dir="/tmp"))
    home = tmp_path / "home"  # the token goes here, and nothing else
    home.mkdir()
    global_ray_tmp_existed = Path("/tmp/ray").exists()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")} | {
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    # The commands of docs/clusters.md: a token generated under umask 077 (the launcher refuses a
    # token file other users can read), then a head with token authentication.
    generated = ray_command("get-auth-token", "--generate", env=env, umask=0o077)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    token_file = home / ".ray" / "auth_token"
    assert len(token_file.read_text().strip()) >= 32
    assert token_file.stat().st_mode & 0o777 == 0o600
    env["RAY_AUTH_MODE"] = "token"
    port = free_port()
    address = f"127.0.0.1:{port}"
    started = ray_command(
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={ray_tmp}",
        env=env,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    search = (data_dir, tmp_path / "cache", tmp_path / "sweep", *RANDOM_SEARCH)
    cluster = ("hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}")
    try:
        out = run_sweep(*search, *cluster, env=env)
        # The launcher's own lines in the sweep's log; one line per trial on the console.
        assert "Ray Launcher is launching 4 jobs" in (tmp_path / "sweep" / "sweep.log").read_text()
        assert len([line for line in out.splitlines() if line.startswith("trial ")]) == 4
        assert "(Epoch 1)" not in out  # the jobs' own output: in their logs
        same_leaderboard(leaderboard(tmp_path / "sweep"), local_leaderboard)
        # Each trial ran as a Ray task with one CPU, and so on one thread.
        jobs = sorted((tmp_path / "sweep").glob("*/metrics/train.json"))
        assert len(jobs) == 4 and {load_json(job)["threads"] for job in jobs} == {1}

        # Without the token (another home, no RAY_AUTH_TOKEN*): refused, one line.
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        other = (tmp_path / "c2", tmp_path / "s2", *RANDOM_SEARCH[:2], *SPACE)
        err = failed_sweep(data_dir, *other, *cluster, env={**env, "HOME": str(stranger)})
        assert "no Ray authentication token for this sweep: set RAY_AUTH_TOKEN_PATH" in err
        assert "Traceback" not in err
        # A wrong token: the head refuses it, and the sweep says so in one line.
        wrong = {**env, "HOME": str(stranger), "RAY_AUTH_TOKEN": "0" * 64}
        err = failed_sweep(data_dir, *other, *cluster, env=wrong)
        assert f"cannot join the Ray cluster at {address} with the token from" in err
        assert "Traceback" not in err
        # Turning authentication off is refused before anything connects.
        off = {**env, "RAY_AUTH_MODE": "disabled"}
        err = failed_sweep(data_dir, *other, *cluster, env=off)
        assert f"RAY_AUTH_MODE={off['RAY_AUTH_MODE']}: npdl's Ray launchers run only" in err
        assert not (tmp_path / "c2").exists() or not any((tmp_path / "c2").rglob("*.npz"))
        # A plain Ray client without the token is refused by the head itself.
        client = subprocess.run(
            [sys.executable, "-c", f"import ray; ray.init(address={address!r})"],
            env={**env, "HOME": str(stranger)},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert client.returncode != 0 and "AuthenticationError" in client.stderr
    finally:
        stopped = ray_command("stop", "--force", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert ray_processes(str(ray_tmp)) == [], "Ray processes outlived `ray stop`"
    shutil.rmtree(ray_tmp)
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [".ray", ".ray/auth_token"], f"Ray wrote into the home directory: {written}"
    assert list(stranger.iterdir()) == []
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
    # The launcher's own lines in the sweep's log; one line per trial on the console.
    assert "Submitit 'local' sweep output dir" in (tmp_path / "sweep" / "sweep.log").read_text()
    assert len([line for line in out.splitlines() if line.startswith("trial ")]) == 4
    assert "(Epoch 1)" not in out  # the jobs' own output: in their logs
    same_leaderboard(leaderboard(tmp_path / "sweep"), local_leaderboard)
    # submitit kept each job's own log in the sweep folder.
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 4
    # Each job ran on the CPUs the launcher gave it (cpus_per_task: 1).
    jobs = sorted((tmp_path / "sweep").glob("*/metrics/train.json"))
    assert len(jobs) == 4 and {load_json(job)["threads"] for job in jobs} == {1}


def private_ray_env(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A Ray temporary folder, an empty home and the environment of a sweep on the
    private Ray (``ray_local``) that may write only there."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="npdl-ray-", dir="/tmp"))
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")} | {
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "NPDL_RAY_TMP": str(ray_tmp),
        "NPDL_RAY_CPUS": "2",
    }
    return ray_tmp, home, env


def test_random_search_on_a_private_ray_matches_the_local_search(
    data_dir,  # noqa: F811
    local_leaderboard,
    tmp_path,
):
    ray_tmp, home, env = private_ray_env(tmp_path)
    out = run_sweep(
        data_dir,
        tmp_path / "cache",
        tmp_path / "sweep",
        *RANDOM_SEARCH,
        "hydra/launcher=ray_local",
        env=env,
    )
    # The launcher's own lines in the sweep's log; one line per trial on the console.
    assert "Ray Launcher is launching 4 jobs" in (tmp_path / "sweep" / "sweep.log").read_text()
    assert len([line for line in out.splitlines() if line.startswith("trial ")]) == 4
    assert "(Epoch 1)" not in out  # the jobs' own output: in their logs
    same_leaderboard(leaderboard(tmp_path / "sweep"), local_leaderboard)
    # It ran with token authentication, from a private token file in NPDL_RAY_TMP
    # (mode 0600), removed at the end.
    assert "npdl-auth-token." not in " ".join(p.name for p in ray_tmp.iterdir())
    # The sweep's Ray ended with it, and kept its files in NPDL_RAY_TMP.
    assert ray_processes(str(ray_tmp)) == [], "Ray processes outlived the sweep"
    assert any(ray_tmp.iterdir()) and list(home.iterdir()) == []
    shutil.rmtree(ray_tmp)


def is_loopback(address: str) -> bool:
    """Whether ``address`` (IPv4, IPv6, or IPv4 written as IPv6) is a loopback address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening_sockets(driver: psutil.Process, marker: str) -> set[tuple[str, str, int]]:
    """``(process, address, port)`` of every TCP socket listening and every UDP socket
    bound (not connected) in ``driver``, the processes it started and any process whose
    command line names ``marker``."""
    processes = {driver, *driver.children(recursive=True)}
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []):
            processes.add(process)
    found = set()
    for process in processes:
        try:
            name, connections = process.name(), process.net_connections(kind="inet")
        except psutil.Error:  # ended meanwhile
            continue
        for connection in connections:
            udp = connection.type == socket.SOCK_DGRAM and not connection.raddr
            if connection.status == psutil.CONN_LISTEN or udp:
                found.add((name, connection.laddr.ip, connection.laddr.port))
    return found


def test_every_socket_of_the_private_ray_listens_on_loopback_only(
    data_dir,  # noqa: F811
    tmp_path,
):
    ray_tmp, _, env = private_ray_env(tmp_path)
    args = sweep_args(
        data_dir,
        tmp_path / "cache",
        tmp_path / "sweep",
        "npdl_random",
        "hydra.sweeper.n_trials=2",
        *SPACE,
        "hydra/launcher=ray_local",
    )
    log = tmp_path / "sweep.log"
    with open(log, "w") as output:
        sweep = subprocess.Popen(args, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    seen: set[tuple[str, str, int]] = set()
    try:
        driver = psutil.Process(sweep.pid)
        # The sweep's Ray lives as long as the sweep: list its sockets until it ends.
        while sweep.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                seen |= listening_sockets(driver, str(ray_tmp))
            time.sleep(0.5)
        assert sweep.returncode == 0, log.read_text()
        assert ray_processes(str(ray_tmp)) == [], "Ray processes outlived the sweep"
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # The listing saw the private Ray itself, not only the driver starting it.
    assert {"gcs_server", "raylet"} <= {name for name, _, _ in seen}, sorted(seen)
    outside = sorted(found for found in seen if not is_loopback(found[1]))
    assert outside == [], f"Ray listens beyond loopback: {outside}"


PRIVATE_RAY_PROBE = """
import os, subprocess, sys
from omegaconf import OmegaConf
import ray
from hydra_plugins.npdl_launchers.ray_token import (
    PrivateRayLauncher, bind_ray_to_loopback, reload_ray_auth_settings)

init = {"num_cpus": 1, "include_dashboard": False, "_node_ip_address": "127.0.0.1",
        "_temp_dir": sys.argv[1]}
launcher = PrivateRayLauncher(ray=OmegaConf.create({"init": init, "remote": {}}))
token_path = launcher.authenticate().split("=", 1)[1]
reload_ray_auth_settings()
bind_ray_to_loopback()  # as PrivateRayLauncher.launch does
print("mode", oct(os.stat(token_path).st_mode & 0o777))
ray.init(**init)
address = ray.get_runtime_context().gcs_address
env = {**os.environ, "RAY_AUTH_TOKEN": "0" * 64}
client = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r})"],
                        env=env, capture_output=True, text=True, timeout=120)
print("wrong token refused", client.returncode != 0 and "Failed to connect" in client.stderr)
print("own token accepted", ray.get(ray.remote(lambda: 42).remote()) == 42)
"""


def test_the_private_ray_refuses_a_client_with_another_token(tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="npdl-ray-", dir="/tmp"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")} | {
        "HOME": str(tmp_path),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    try:
        probe = subprocess.run(
            [sys.executable, "-c", PRIVATE_RAY_PROBE, str(ray_tmp)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert "mode 0o600" in probe.stdout  # the token file: this user alone
        assert "wrong token refused True" in probe.stdout
        assert "own token accepted True" in probe.stdout
        assert not list(ray_tmp.glob("npdl-auth-token.*")), "the private token outlived Ray"
        assert ray_processes(str(ray_tmp)) == []
        assert list(tmp_path.iterdir()) == []  # no ~/.ray/auth_token made
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


# The tune stage itself (what `dvc repro` runs) on each launcher: tune.launcher.
TUNE_STAGE = [
    "normalize.method=standardize",  # the fixture's data is standardised
    "model.input_pca=null",  # principal components come with zca
    "model.batch_norm=false",
    "solver.hflip=false",
    "solver.crop_padding=0",
    "solver.warmup_epochs=0",
    "model.hidden_size=[16]",
    "solver.batch_size=64",
    # The default successive halving, small: 3 configurations, 1 then 2 epochs.
    "tune.n_trials=3",
    "tune.epochs=2",
    "tune.min_epochs=1",
]


def run_tune_stage(data_dir, run: Path, *overrides, env=None) -> list[dict]:  # noqa: F811
    """``stages/tune.py`` into ``run`` with a run store of its own; its leaderboard."""
    command = [sys.executable, str(ROOT / "stages" / "tune.py"), f"paths.data={data_dir}"]
    command += [f"paths.run_store={run / 'store'}", f"paths.cache={run / 'cache'}"]
    command += [f"hydra.run.dir={run}", *TUNE_STAGE, *overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return leaderboard(run / "models" / "tune")


def sweep_jobs(run: Path) -> list[Path]:
    """The job folders of the search whose reports are in ``run/models/tune``."""
    folder = Path(load_json(run / "models" / "tune" / "sweep.json")["folder"])
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


@pytest.fixture(scope="module")
def basic_tune(data_dir, tmp_path_factory):  # noqa: F811
    """The tune stage on Hydra's basic launcher, run twice (the second all hits)."""
    run = tmp_path_factory.mktemp("basic-tune")
    first = run_tune_stage(data_dir, run, "tune.keep_sweeps=2")
    first_folder = load_json(run / "models" / "tune" / "sweep.json")["folder"]
    second = run_tune_stage(data_dir, run, "tune.keep_sweeps=2")
    return run, first, first_folder, second


def test_the_tune_stage_keeps_earlier_searches_folders_and_names_its_own(basic_tune):
    run, first, first_folder, second = basic_tune
    # 3 configurations at 1 epoch, the best (and the configured values) at 2.
    assert len(first) in (4, 5) and len(second) == len(first)
    trial_log = Path(load_json(run / "models" / "tune" / "sweep.json")["folder"]) / "trials.csv"
    with open(trial_log) as handle:  # the second search: every trial from the store
        assert {row["cache_hit"] for row in csv.DictReader(handle)} == {"True"}
    folders = sorted((run / "cache" / "tune-sweeps").iterdir())
    named = Path(load_json(run / "models" / "tune" / "sweep.json")["folder"])
    # The earlier search's folder (per-trial logs) is kept, not deleted.
    assert len(folders) == 2 and Path(first_folder) in folders and named in folders
    assert named != Path(first_folder)
    assert (named / "leaderboard.csv").read_text() == (
        run / "models" / "tune" / "leaderboard.csv"
    ).read_text()
    assert len(list(Path(first_folder).glob("*/metrics/train.json"))) == len(first)
    # Every row names its run store entry (what `npdl cache gc --keep-referenced` keeps).
    for row in second:
        assert (
            run / "store" / "trials" / row["lineage"] / f"epochs-{int(row['budget']):04d}"
        ).is_dir()


def test_keeping_the_newest_sweep_folders(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "stages"))
    from tune import new_sweep_folder

    sweeps = tmp_path / "tune-sweeps"
    for name in ("20250101-000000-1", "20250102-000000-1", "20250103-000000-1"):
        (sweeps / name).mkdir(parents=True)
    folder = new_sweep_folder(sweeps, keep=2)
    assert sorted(p.name for p in sweeps.iterdir()) == ["20250103-000000-1"]
    assert folder.parent == sweeps and folder.name > "20250103"
    new_sweep_folder(sweeps, keep=1)
    assert list(sweeps.iterdir()) == []


def test_the_tune_stage_on_a_private_ray_gives_the_basic_launchers_leaderboard(
    data_dir,  # noqa: F811
    basic_tune,
    tmp_path,
):
    ray_tmp, _, env = private_ray_env(tmp_path)
    try:
        board = run_tune_stage(data_dir, tmp_path, "tune.launcher=ray_local", env=env)
        assert ray_processes(str(ray_tmp)) == [], "Ray processes outlived the search"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    same_leaderboard(board, basic_tune[1])
    from npdl.threads import products_depend_on_threads

    # The same runs, unless this BLAS sums differently on one thread than on the basic
    # launcher's two: then the thread count is part of each run's identity.
    same_runs = [row["lineage"] for row in board] == [row["lineage"] for row in basic_tune[1]]
    assert same_runs != products_depend_on_threads(2)
    # Each trial ran as a Ray task with one CPU (ray.remote.num_cpus), on one thread.
    jobs = sweep_jobs(tmp_path)
    assert len(jobs) == len(board)
    assert {load_json(job / "metrics" / "train.json")["threads"] for job in jobs} == {1}


def test_the_tune_stage_through_submitit_gives_the_basic_launchers_leaderboard(
    data_dir,  # noqa: F811
    basic_tune,
    tmp_path,
):
    settings = "tune.launcher_settings={cpus_per_task: 1, timeout_min: 10}"
    board = run_tune_stage(data_dir, tmp_path, "tune.launcher=local_submitit", settings)
    same_leaderboard(board, basic_tune[1])
    folder = Path(load_json(tmp_path / "models" / "tune" / "sweep.json")["folder"])
    assert len(list((folder / ".submitit").glob("*/*_log.out"))) == len(board)  # a job a trial
    jobs = sweep_jobs(tmp_path)
    assert {load_json(j / "metrics" / "train.json")["threads"] for j in jobs} == {1}
