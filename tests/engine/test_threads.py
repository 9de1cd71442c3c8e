"""Thread counts follow the cores the process may use; explicit choices win; bad values fail."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from populace.engine import threads


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV, raising=False)
    yield monkeypatch
    torch.set_num_threads(before)


def test_available_cores_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.available_cores() == 6
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 2.5)  # 250 ms per 100 ms period
    assert threads.available_cores() == 3
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 0.2)
    assert threads.available_cores() == 1


def test_cgroup_quota_reads_v2_ancestors_and_v1(tmp_path):
    leaf = tmp_path / "box" / "job"
    leaf.mkdir(parents=True)
    (tmp_path / "box" / "cpu.max").write_text("150000 100000\n")  # the parent allows 1.5 CPUs
    (leaf / "cpu.max").write_text("max 100000\n")
    assert threads._cgroup_quota(tmp_path, "0::/box/job\n") == 1.5
    (leaf / "cpu.max").write_text("50000 100000\n")
    assert threads._cgroup_quota(tmp_path, "0::/box/job\n") == 0.5
    v1 = tmp_path / "cpu,cpuacct" / "job"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads._cgroup_quota(tmp_path, "4:cpu,cpuacct:/job\n1:memory:/x\n") == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # unlimited
    assert threads._cgroup_quota(tmp_path, "4:cpu,cpuacct:/job\n") is None


def test_use_threads_auto_explicit_and_none(restore_threads):
    monkeypatch = restore_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 1)
    assert threads.use_threads("auto") == 1 and torch.get_num_threads() == 1
    assert threads.use_threads(2) == 2 and torch.get_num_threads() == 2
    assert threads.use_threads(None) == 2  # left as it is
    monkeypatch.setenv(threads.ENV, "1")
    assert threads.use_threads("auto") == 1  # POPULACE_THREADS wins over the core count
    monkeypatch.delenv(threads.ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert threads.use_threads("auto") == 2  # the user's OMP_NUM_THREADS is kept


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "many"])
def test_bad_thread_counts_name_the_problem(bad, restore_threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        threads.use_threads(bad)


def test_bad_environment_count_names_the_variable(restore_threads):
    restore_threads.setenv(threads.ENV, "zero")
    with pytest.raises(ValueError, match="POPULACE_THREADS"):
        threads.default_threads()


def test_import_sets_a_passive_wait_policy_unless_the_user_chose_one():
    code = "import os, populace; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"


def test_simulation_and_cli_take_a_thread_count(restore_threads, tmp_path):
    from populace.cli import main
    from populace.engine import Simulation
    from populace.models import sir

    sim = Simulation(sir.build(agents=100), threads=1, progress=False)
    assert sim.threads == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads"):
        Simulation(sir.build(agents=100), threads=0)
    restore_threads.setenv(threads.ENV, "1")  # undone after the test; the CLI overwrites it
    assert main(["run", "sir", "--agents", "100", "--steps", "2", "--threads", "2"]) == 0
    assert os.environ[threads.ENV] == "2" and torch.get_num_threads() == 2


def test_auto_keeps_a_smaller_count_the_user_gave_torch(monkeypatch):
    import torch

    from populace.engine.threads import ENV, use_threads

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert use_threads("auto") == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
