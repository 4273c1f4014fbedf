"""The class regrade's workflow (.github/workflows/regrade-class.yml) is valid GitHub Actions and keeps the
regrade's promises on GitHub's runners: started by hand only, the roster token only in a secret and only
where git needs it, one secret for every shard, a matrix of shards that merge only when all succeeded,
every shard's output and log kept, the template's torch and the sandbox's bubblewrap. actionlint checks it
in tests/instructor/test_workflow.py; the shard-and-merge logic itself, tests/instructor/test_shards.py.
(Instructor-only.)"""

import base64
import functools
import os
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from grading.publish.template import is_instructor_only
from test_workflow import CURRENT_MAJORS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "regrade-class.yml"
MAJORS = {**CURRENT_MAJORS, "actions/download-artifact": 8}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps_of(workflow, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def runs(workflow, job: str) -> str:
    return "\n".join(step.get("run", "") for step in steps_of(workflow, job))


def test_only_the_instructor_starts_it_and_students_never_receive_it(workflow):
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert list(trigger) == ["workflow_dispatch"], "no push, schedule or pull request starts a regrade"
    assert is_instructor_only(".github/workflows/regrade-class.yml")
    assert workflow["permissions"] == {"contents": "read"}


def test_every_action_is_githubs_own_at_a_current_major_and_keeps_no_credentials(workflow):
    for job in workflow["jobs"]:
        for step in steps_of(workflow, job):
            if "uses" not in step:
                continue
            name, _, version = step["uses"].partition("@")
            assert name in MAJORS and re.fullmatch(r"v\d+", version) and int(version[1:]) >= MAJORS[name], step["uses"]
            if name == "actions/checkout":
                assert step["with"]["persist-credentials"] is False, "no token left in .git/config for student code"


def test_the_roster_token_is_read_from_a_secret_by_git_alone(workflow):
    text = WORKFLOW.read_text()
    assert set(re.findall(r"\$\{\{\s*secrets\.(\w+)", text)) == {"ROSTER_TOKEN"}
    for job in workflow["jobs"]:
        for step in steps_of(workflow, job):
            assert "${{" not in step.get("run", ""), "an expression expanded into a script: its value shows in the log"
            if "ROSTER_TOKEN" in str(step.get("env", {})):
                assert job == "collect"
                # in a header, never in a URL of git's settings: the test below shows where it goes
                assert "insteadOf" not in step["run"] or ".extraheader" in step["run"], step["run"]
    assert "ROSTER_TOKEN" not in str(workflow["jobs"]["regrade"]), "the shards that run student code never see it"
    steps = steps_of(workflow, "collect")
    guard = next(i for i, step in enumerate(steps) if 'grep -rqF "$ROSTER_TOKEN"' in step.get("run", ""))
    upload = next(i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/upload-artifact"))
    collect = next(i for i, step in enumerate(steps) if "python -m grading collect" in step.get("run", ""))
    assert collect < guard < upload, "the class is searched for the token after collect, before it is uploaded"


def test_every_shard_draws_with_the_one_secret_collect_drew(workflow):
    plan = next(step for step in steps_of(workflow, "collect") if step.get("id") == "plan")
    assert "secrets.randbits" in plan["run"] and "secret=" in plan["run"]
    regrade = workflow["jobs"]["regrade"]
    assert regrade["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.collect.outputs.shards) }}"
    assert regrade["strategy"]["fail-fast"] is False, "one shard's trouble should not cancel the others"
    step = next(step for step in steps_of(workflow, "regrade") if "grading regrade" in step.get("run", ""))
    assert step["env"]["SECRET"] == "${{ needs.collect.outputs.secret }}"
    command = step["run"]
    assert '--shard "$SHARD/$SHARDS"' in command and '--seed "$SECRET"' in command
    assert command.index("::add-mask::$SECRET") < command.index("python -m grading regrade")
    assert step["shell"] == "bash", "bash with pipefail: a failed regrade fails the step despite its tee"


def test_the_plan_lists_every_shard_once(workflow):
    plan = next(step for step in steps_of(workflow, "collect") if step.get("id") == "plan")
    line = next(line for line in plan["run"].splitlines() if line.startswith('echo "shards='))
    script = re.search(r"python -c '([^']+)'", line)[1]
    trigger = workflow.get("on", workflow.get(True))
    for count in trigger["workflow_dispatch"]["inputs"]["shards"]["options"]:
        printed = subprocess.run(["python3", "-c", script, count], capture_output=True, text=True, check=True).stdout
        assert yaml.safe_load(printed) == list(range(1, int(count) + 1))


def test_each_shard_keeps_its_output_and_log_and_merge_waits_for_all(workflow):
    upload = next(step for step in steps_of(workflow, "regrade") if step.get("uses", "").startswith(
        "actions/upload-artifact"))
    assert upload.get("if") == "always()" and upload["with"]["path"] == "shard-${{ matrix.shard }}"
    assert "tee \"shard-$SHARD/regrade.log\"" in runs(workflow, "regrade")
    merge = workflow["jobs"]["merge"]
    assert merge["needs"] == "regrade" and "if" not in merge, "a gradebook only from every shard"
    assert "python -m grading merge shards/shard-* --out" in runs(workflow, "merge")


def test_the_runners_get_the_pinned_cpu_torch_and_a_sandbox_that_can_start(workflow):
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)[1]
    assert workflow["env"]["TORCH_VERSION"] == pinned
    script = runs(workflow, "regrade")
    assert '"torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu' in script
    assert "-r grading/regrade/container/requirements.txt" in script
    assert "apt-get install -y -qq bubblewrap" in script
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in script, "Ubuntu 24.04 refuses bwrap's namespaces"
    assert all(job["runs-on"].startswith("ubuntu-") for job in workflow["jobs"].values())


class Recording(SimpleHTTPRequestHandler):
    """Serves repositories over git's plain ("dumb") HTTP, and notes the Authorization header of each request."""

    def __init__(self, *args, seen: list, **kwargs):
        self.seen = seen
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.seen.append(self.headers.get("Authorization"))
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def host(tmp_path):
    """(a local stand-in for github.com serving the release owner/release.git and alice/work.git, a student's
    commit on top of it; the Authorization headers it received)."""
    served, seen = tmp_path / "served", []
    author = ("-c", "user.name=A", "-c", "user.email=a@example.invalid")
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README.md").write_text("# Pig Latin\n")
    for message in ("release", "mine"):
        subprocess.run(["git", *author, "commit", "-q", "--allow-empty", "-m", message], cwd=work, check=True)
        if message == "release":
            subprocess.run(["git", "add", "README.md"], cwd=work, check=True)
            subprocess.run(["git", *author, "commit", "-q", "--amend", "-m", message], cwd=work, check=True)
            subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "owner" / "release.git")], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "alice" / "work.git")], check=True)
    for bare in (served / "owner" / "release.git", served / "alice" / "work.git"):
        subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Recording, seen=seen, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    server.shutdown()


def collect_steps(workflow, url: str, tmp_path: Path, token: str, roster_url: str = None) -> list:
    """The collect job's own scripts from the token to its guard, run in order with github.com at `url` and a
    roster of one student at `roster_url` (by default on that host); each step's CompletedProcess."""
    home, course = tmp_path / "home", tmp_path / "course"
    home.mkdir()
    course.mkdir()
    (course / "roster.csv").write_text(f"student,repository\nalice,{roster_url or url + 'alice/work.git'}\n")
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PYTHONPATH": str(ROOT), "COURSE": str(course),
           "ROSTER_TOKEN": token, "RELEASE": "owner/release", "DEADLINE": "2090-01-01 00:00 +0000"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    steps = steps_of(workflow, "collect")
    first = next(i for i, step in enumerate(steps) if "ROSTER_TOKEN" in str(step.get("env", {})))
    guard = next(i for i, step in enumerate(steps) if 'grep -rqF "$ROSTER_TOKEN"' in step.get("run", ""))
    done = []
    for step in steps[first:guard + 1]:
        script = step["run"].replace("https://github.com/", url).replace("python -m grading", f"{sys.executable} -m grading")
        done.append(subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                                   text=True, timeout=300))
        if done[-1].returncode:
            break
    return done


def test_the_roster_token_reaches_the_host_and_never_the_class(workflow, host, tmp_path):
    url, seen = host
    token = "ghs_" + "7" * 36
    steps = collect_steps(workflow, url, tmp_path, token)
    assert [step.returncode for step in steps] == [0] * len(steps), [step.stderr for step in steps]
    submitted = tmp_path / "course" / "submissions" / "alice.git"
    assert subprocess.run(["git", "log", "-1", "--format=%s", "submitted"], cwd=submitted, capture_output=True,
                          text=True).stdout == "mine\n", "collect fetched the student's commit through the host"
    header = "basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert header in seen, "git gave the host the token in its header, as GitHub reads it"
    found = subprocess.run(["grep", "-rlF", token, str(tmp_path)], capture_output=True, text=True).stdout
    assert found.split() == [], "the token is in no file of the class, the release or git's settings"


def test_a_token_written_into_the_class_stops_the_upload(workflow, host, tmp_path):
    """The guard's negative control: a roster that names a repository with the token in its URL (a course's
    mistake) has it written into the class (the copy's git settings); the step before the upload fails."""
    url, _ = host
    token = "ghs_" + "8" * 36
    inside = url.replace("http://", f"http://x-access-token:{token}@") + "alice/work.git"
    steps = collect_steps(workflow, url, tmp_path, token, roster_url=inside)
    assert [step.returncode for step in steps[:-1]] == [0] * (len(steps) - 1), [step.stderr for step in steps]
    assert steps[-1].returncode == 1
    assert steps[-1].stdout.strip() == "::error::the roster token was written into the class"
