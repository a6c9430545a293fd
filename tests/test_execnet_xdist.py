"""pytest-xdist, released and unmodified, running a sample project on execwire through the execnet package.

Each run is ``python -m pytest`` in a child with the folder of
``--execnet-shim-path`` on PYTHONPATH. The sample's tests write what they see
from inside their worker (pid, cwd, Python, which execnet, whether execwire's
far side carries them) to files the test then reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import find_python
from shim_helpers import shim_env

from execwire._execnet import shim_path

pytest.importorskip("xdist", reason="pytest-xdist is in the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.timeout(300)

SAMPLE_CONFTEST = '''
import json, os, sys

def record(name):
    import execnet
    facts = {
        "test": name,
        "worker": os.environ.get("PYTEST_XDIST_WORKER"),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "version": list(sys.version_info[:2]),
        "execnet": execnet.__file__,
        "carried_by_execwire": "_execwire_far" in sys.modules,
    }
    path = os.path.join(os.environ["SAMPLE_RESULTS"], "%s-%s-%d.json" % (name, facts["worker"], os.getpid()))
    with open(path, "w") as f:
        json.dump(facts, f)
'''

SAMPLE_TESTS = '''
import pytest
from conftest import record


@pytest.mark.parametrize("n", range(4))
def test_passes(n):
    record("passes%d" % n)


def test_fails():
    record("fails")
    assert 6 * 7 == 43, "the sample's failing test"


class TestScope:
    def test_one(self):
        record("scope_one")

    def test_two(self):
        record("scope_two")
'''

CRASH_TESTS = '''
import os
from conftest import record


def test_before_the_crash():
    record("before")


def test_crashes():
    os._exit(3)


def test_after_the_crash():
    record("after")
'''


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    project = tmp_path / "sample"
    project.mkdir()
    (project / "conftest.py").write_text(SAMPLE_CONFTEST)
    (project / "test_sample.py").write_text(SAMPLE_TESTS)
    (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n")
    (tmp_path / "results").mkdir()
    return project


def run_xdist(project: Path, *args: str, extra_path: str = "") -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    results = project.parent / "results"
    env = shim_env(SAMPLE_RESULTS=str(results))
    if extra_path:
        env["PYTHONPATH"] += os.pathsep + extra_path
    argv = [sys.executable, "-m", "pytest", "-p", "no:benchmark", "--max-worker-restart=2", *args]
    completed = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=240)
    facts = [json.loads(path.read_text()) for path in sorted(results.glob("*.json"))]
    for path in results.glob("*.json"):
        path.unlink()
    return completed, facts


def assert_carried_by_execwire(facts: list[dict], controller_pid: int | None = None) -> None:
    assert facts, "no test reported from a worker"
    for fact in facts:
        assert fact["execnet"].startswith(shim_path()), fact
        assert fact["carried_by_execwire"], fact
        assert fact["worker"] and fact["worker"].startswith("gw"), fact


def outcome_line(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr


def test_plain_run_with_a_failing_test(sample):
    completed, facts = run_xdist(sample, "-n", "2")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "INTERNALERROR" not in completed.stdout + completed.stderr
    assert "1 failed, 6 passed" in outcome_line(completed), completed.stdout
    assert "the sample's failing test" in completed.stdout
    assert_carried_by_execwire(facts)
    assert {fact["worker"] for fact in facts} <= {"gw0", "gw1"}
    assert len(facts) == 7


def test_dist_loadscope_keeps_a_class_on_one_worker(sample):
    completed, facts = run_xdist(sample, "-n", "2", "--dist", "loadscope")
    assert "1 failed, 6 passed" in outcome_line(completed), completed.stdout + completed.stderr
    assert_carried_by_execwire(facts)
    scope = {fact["worker"] for fact in facts if fact["test"].startswith("scope_")}
    assert len(scope) == 1, facts


def test_a_crashing_worker_is_reported_against_its_test_and_replaced(sample):
    (sample / "test_sample.py").unlink()
    (sample / "test_crash.py").write_text(CRASH_TESTS)
    completed, facts = run_xdist(sample, "-n", "2", "-p", "no:randomly")
    output = completed.stdout + completed.stderr
    assert "crashed while running 'test_crash.py::test_crashes'" in output, output
    assert "1 failed, 2 passed" in outcome_line(completed), output
    assert "INTERNALERROR" not in output
    assert sorted(fact["test"] for fact in facts) == ["after", "before"]
    assert_carried_by_execwire(facts)



_OTHER = find_python("3.12*") or find_python("3.13*") or find_python("3.10*")


@pytest.mark.skipif(_OTHER is None, reason="no other Python under pyenv")
def test_tx_popen_with_another_python(sample):
    # the other Python finds pytest (pure Python) where this one has it: its own site-packages has none
    import iniconfig
    import packaging
    import pluggy
    import xdist

    folders = {str(Path(module.__file__).resolve().parent.parent)
               for module in (pytest, pluggy, iniconfig, packaging, xdist) if module.__file__}
    completed, facts = run_xdist(sample, "--tx", f"popen//python={_OTHER}", "--tx", "popen", "--dist", "each",
                                 "-k", "passes", extra_path=os.pathsep.join(sorted(folders)))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_carried_by_execwire(facts)
    versions = {tuple(fact["version"]) for fact in facts}
    assert versions == {tuple(sys.version_info[:2]), _version_of(_OTHER)}, versions


def _version_of(python: str | None) -> tuple[int, int]:
    out = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    return int(out[0]), int(out[1])


def test_rsyncdir_to_a_popen_chdir_target(sample, tmp_path):
    target = tmp_path / "target"
    completed, facts = run_xdist(sample, "--tx", f"popen//chdir={target}", "--rsyncdir", str(sample), "-d",
                                 str(sample / "test_sample.py"), "-k", "passes")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (target / "sample" / "test_sample.py").read_text() == SAMPLE_TESTS
    assert (target / "sample" / "conftest.py").is_file()
    assert_carried_by_execwire(facts)
    assert {fact["cwd"] for fact in facts} == {str(target)}, facts


def test_tx_via_a_proxy_gateway(sample):
    completed, facts = run_xdist(sample, "--px", "popen//id=proxy", "--tx", "popen//via=proxy", "-d",
                                 "-k", "passes")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_carried_by_execwire(facts)
    # the worker was started by the proxy's far Python, not by pytest's own process
    assert len({fact["ppid"] for fact in facts}) == 1
    controller_children = {fact["ppid"] for fact in facts}
    assert all(ppid != os.getpid() for ppid in controller_children)
