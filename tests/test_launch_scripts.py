"""launch/tpu_pod.sh and launch/slurm.sh: the --dry-run plans (order, --worker=all, the exact jaxat
command, the sbatch file), one-line refusals, the missing-tool check, the real (non-dry) path
against stand-in gcloud/sbatch/srun/scontrol programs, the generated batch script's requeue
logic, and jaxat's own flag parsing of the planned command. No cloud or cluster is reached."""

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from tiny_runs import REPO_ROOT

LAUNCH = os.path.join(REPO_ROOT, "launch")
BASH = shutil.which("bash")
CONFIG = "configs/uiat.py:cifar10,smoke"
OVERRIDES = ["--config.method.attack.eps=8/255", "--config.log.progress=none"]
LOG_ARGV = 'printf "%q " "${0##*/}" "$@" >> "$LAUNCH_LOG"; echo >> "$LAUNCH_LOG"\n'


def _bin(tmp_path, tools=(), fakes=None):
  """A PATH folder with only `tools` (links to the real programs) and `fakes` (name -> script
  body after a line that logs the argv to $LAUNCH_LOG)."""
  folder = tmp_path / "bin"
  folder.mkdir(exist_ok=True)
  for tool in tools:
    if not (folder / tool).exists():
      (folder / tool).symlink_to(shutil.which(tool))
  for name, body in (fakes or {}).items():
    path = folder / name
    path.write_text(f"#!{BASH}\n{LOG_ARGV}{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
  return folder


def _run(script, args, tmp_path, tools=(), fakes=None, env_extra=None):
  """Runs launch/<script> with bash in tmp_path, PATH holding only what the test put there
  (never the machine's gcloud, sbatch or srun)."""
  env = {"PATH": str(_bin(tmp_path, tools, fakes)), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
         "LAUNCH_LOG": str(tmp_path / "calls.log"), **(env_extra or {})}
  return subprocess.run([BASH, os.path.join(LAUNCH, script), *args], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=60)


def _plan(stdout):
  """The `+ command` lines of a plan, each split as the shell would."""
  return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _calls(tmp_path):
  log = tmp_path / "calls.log"
  return [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []


# ----------------------------------------------------------------------------- TPU VM pod

POD = ["--name=pod1", "--zone=us-central2-b", "--accelerator-type=v4-16", f"--config={CONFIG}",
       "--workdir=/mnt/jaxat/runs/u", "--bucket=gs://my-bucket", "--spot"]


def _tpu_step(argv):
  """Names a planned command: create, archive, upload, install, run, copy or delete."""
  if argv[0] == "git":
    return "archive"
  assert argv[:4] == ["gcloud", "compute", "tpus", "tpu-vm"], argv
  verb = argv[4]
  if verb == "ssh":
    command = next(a for a in argv if a.startswith("--command="))
    return "run" if "jaxat.main" in command else "install"
  if verb == "scp":
    return "copy" if "--recurse" in argv else "upload"
  return verb


def _remote_command(argv):
  return next(a for a in argv if a.startswith("--command=")).split("=", 1)[1]


def _jaxat_argv_on_workers(plan):
  """The jaxat command of the run step, as every worker's shell splits it."""
  run = [argv for argv in plan if _tpu_step(argv) == "run"]
  assert len(run) == 1
  last = _remote_command(run[0]).split(" && ")[-1]
  return shlex.split(last)


def test_tpu_pod_dry_run_plan_in_order(tmp_path):
  done = _run("tpu_pod.sh", ["--dry-run", *POD, OVERRIDES[0], "--", OVERRIDES[1]], tmp_path)
  assert done.returncode == 0 and done.stderr == "", done.stderr
  plan = _plan(done.stdout)
  assert [_tpu_step(argv) for argv in plan] == ["create", "archive", "upload", "install", "run", "copy"]
  create, _, upload, install, run, copy = plan
  assert create[5] == "pod1" and "--zone=us-central2-b" in create
  assert "--accelerator-type=v4-16" in create and "--spot" in create
  assert "--version=tpu-ubuntu2204-base" in create
  for argv in (upload, install, run):
    assert "--worker=all" in argv and "pod1" in " ".join(argv)
  assert "pip install" in _remote_command(install) and "[tpu]" in _remote_command(install)
  assert "gcsfuse" in _remote_command(install) and " my-bucket /mnt/jaxat" in _remote_command(install)
  assert _jaxat_argv_on_workers(plan) == [
      "$HOME/jaxat-venv/bin/python", "-m", "jaxat.main", f"--config={CONFIG}",
      "--workdir=/mnt/jaxat/runs/u", "--distributed_auto", *OVERRIDES]
  assert "--worker=0" in copy and "pod1:/mnt/jaxat/runs/u" in copy and copy[-3] == "./u"
  assert not any(path.name != "bin" for path in tmp_path.iterdir())  # the dry run made nothing


def test_tpu_pod_options_change_the_plan(tmp_path):
  plan = _plan(_run("tpu_pod.sh", ["--dry-run", *POD, "--delete-after", "--recreate",
                                   "--repo=https://example.org/me/jaxat.git", "--ref=v1"],
                    tmp_path).stdout)
  assert [_tpu_step(argv) for argv in plan] == ["delete", "create", "install", "run", "copy", "delete"]
  install = _remote_command(plan[2])
  assert "git clone --quiet https://example.org/me/jaxat.git" in install and "checkout --quiet v1" in install
  plan = _plan(_run("tpu_pod.sh", ["--dry-run", *POD, "--skip-create", "--no-copy"], tmp_path).stdout)
  assert [_tpu_step(argv) for argv in plan] == ["archive", "upload", "install", "run"]


@pytest.mark.parametrize("drop", ["--name", "--zone", "--config", "--workdir"])
def test_tpu_pod_missing_required_flag_is_one_line(tmp_path, drop):
  done = _run("tpu_pod.sh", ["--dry-run", *[a for a in POD if not a.startswith(drop + "=")]], tmp_path)
  assert done.returncode == 2 and done.stdout == ""
  assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {drop}=")


@pytest.mark.parametrize("args, needle", [
    (["--bogus=1"], "unknown argument --bogus=1"),
    (["--workdir=runs/u"], "must be an absolute path"),
    (["--workdir=/elsewhere/u"], "not under the bucket's mount point"),
    (["--skip-create", "--recreate"], "exclude each other"),
])
def test_tpu_pod_bad_flags_are_one_line(tmp_path, args, needle):
  done = _run("tpu_pod.sh", ["--dry-run", *POD, *args], tmp_path)
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and needle in done.stderr


def test_tpu_pod_without_gcloud_fails_in_one_line_and_creates_nothing(tmp_path):
  done = _run("tpu_pod.sh", POD, tmp_path, tools=["git"])
  assert done.returncode != 0 and done.stdout == ""
  assert done.stderr.count("\n") == 1 and "gcloud not found" in done.stderr
  assert sorted(path.name for path in tmp_path.iterdir()) == ["bin"]


def test_tpu_pod_runs_its_plan_with_gcloud(tmp_path):
  """Without --dry-run (a stand-in gcloud that logs its argv): the commands run are the plan's."""
  if shutil.which("git") is None or not os.path.exists(os.path.join(REPO_ROOT, ".git")):
    pytest.skip("uploading this checkout needs git and a git checkout")
  args = [*POD, "--delete-after", OVERRIDES[0]]
  plan = _plan(_run("tpu_pod.sh", ["--dry-run", *args], tmp_path).stdout)
  done = _run("tpu_pod.sh", args, tmp_path, tools=["git", "gzip"], fakes={"gcloud": "exit 0"})
  assert done.returncode == 0, done.stderr
  assert _calls(tmp_path) == [argv for argv in plan if argv[0] == "gcloud"]
  assert (tmp_path / "jaxat-pod1.tar.gz").stat().st_size > 0  # git archive of HEAD


def test_tpu_pod_preempted_run_stops_before_copy_and_delete(tmp_path):
  """jaxat's 143 (checkpointed on SIGTERM) ends the script with 143 and a one-line resume hint;
  nothing is copied or deleted."""
  fake = 'case "$*" in *jaxat.main*) exit 143 ;; esac'
  done = _run("tpu_pod.sh", [*POD, "--delete-after", "--repo=https://example.org/j.git"], tmp_path,
              fakes={"gcloud": fake})
  assert done.returncode == 143
  assert done.stderr.count("\n") == 1 and "preempted" in done.stderr and "again to resume" in done.stderr
  assert [_tpu_step(argv) for argv in _calls(tmp_path)] == ["create", "install", "run"]


# ----------------------------------------------------------------------------- SLURM

SLURM = [f"--config={CONFIG}", "--workdir=/shared/runs/u", "--nodes=3", "--gpus-per-node=2"]


def _sbatch_file(stdout):
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("# sbatch file "))
  end = next(i for i, line in enumerate(lines) if line.startswith("# end of "))
  return lines[start + 1:end]


def _srun_argv(script_lines):
  srun = [line for line in script_lines if line.startswith("srun ")]
  assert len(srun) == 1 and srun[0].endswith(" &")
  return shlex.split(srun[0][:-2])


EXPECTED_SRUN = ["srun", "--nodes=3", "--ntasks-per-node=2", "--gpus-per-task=1", "--kill-on-bad-exit=1",
                 "python", "-m", "jaxat.main", f"--config={CONFIG}", "--workdir=/shared/runs/u", *OVERRIDES]


def test_slurm_dry_run_sbatch_file_and_submission(tmp_path):
  done = _run("slurm.sh", ["--dry-run", *SLURM, "--requeue", "--partition=gpu",
                           "--setup=module load cuda/12.4", "--venv=/opt/venvs/jaxat",
                           OVERRIDES[0], "--", OVERRIDES[1]], tmp_path)
  assert done.returncode == 0 and done.stderr == "", done.stderr
  script = _sbatch_file(done.stdout)
  assert script[0] == "#!/usr/bin/env bash"
  directives = [line for line in script if line.startswith("#SBATCH ")]
  for expected in ("--nodes=3", "--ntasks-per-node=2", "--gpus-per-task=1", "--signal=TERM@120",
                   "--requeue", "--partition=gpu", "--time=24:00:00", f"--chdir={REPO_ROOT}"):
    assert f"#SBATCH {expected}" in directives
  assert _srun_argv(script) == EXPECTED_SRUN
  # jaxat reads SLURM's variables: none of the three distributed flags (nor the TPU one).
  assert not any(flag in " ".join(script) for flag in ("--coordinator_address", "--num_processes",
                                                       "--process_id", "--distributed_auto"))
  body = "\n".join(script)
  assert body.index("module load cuda/12.4") < body.index("source /opt/venvs/jaxat/bin/activate") \
      < body.index("export JAXAT_COORDINATOR_PORT") < body.index("srun ")
  assert _plan(done.stdout) == [["sbatch", "./jaxat-jaxat.sbatch"]]
  assert sorted(path.name for path in tmp_path.iterdir()) == ["bin"]
  checked = subprocess.run([BASH, "-n"], input=body + "\n", capture_output=True, text=True)
  assert checked.returncode == 0, checked.stderr


def test_slurm_without_requeue_has_no_requeue_logic(tmp_path):
  script = _sbatch_file(_run("slurm.sh", ["--dry-run", *SLURM], tmp_path).stdout)
  assert "#SBATCH --signal=TERM@120" in script and "#SBATCH --requeue" not in script
  assert not any("scontrol" in line for line in script)


def test_slurm_in_allocation_runs_the_same_srun_line(tmp_path):
  done = _run("slurm.sh", ["--dry-run", "--in-allocation", "--port=2222", *SLURM, *OVERRIDES], tmp_path)
  assert done.returncode == 0, done.stderr
  plan = _plan(done.stdout)
  assert plan[0] == ["export", "JAXAT_COORDINATOR_PORT=2222"] and plan[-1] == EXPECTED_SRUN


@pytest.mark.parametrize("drop", ["--config", "--workdir"])
def test_slurm_missing_required_flag_is_one_line(tmp_path, drop):
  done = _run("slurm.sh", ["--dry-run", *[a for a in SLURM if not a.startswith(drop + "=")]], tmp_path)
  assert done.returncode == 2 and done.stdout == ""
  assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {drop}=")


@pytest.mark.parametrize("args, needle", [
    (["--bogus"], "unknown argument --bogus"),
    (["--nodes=0"], "--nodes=0 must be a positive integer"),
    (["--", "--process_id=1"], "takes the process layout from SLURM"),
    (["--", "--distributed_auto"], "takes the process layout from SLURM"),
    (["--in-allocation", "--requeue"], "--requeue needs a batch job"),
])
def test_slurm_bad_flags_are_one_line(tmp_path, args, needle):
  done = _run("slurm.sh", ["--dry-run", *SLURM, *args], tmp_path)
  assert done.returncode == 2 and done.stderr.count("\n") == 1 and needle in done.stderr


def test_slurm_without_sbatch_fails_in_one_line_and_writes_nothing(tmp_path):
  done = _run("slurm.sh", SLURM, tmp_path)
  assert done.returncode != 0 and done.stdout == ""
  assert done.stderr.count("\n") == 1 and "sbatch not found" in done.stderr
  done = _run("slurm.sh", ["--in-allocation", *SLURM], tmp_path)
  assert done.returncode != 0 and done.stderr.count("\n") == 1 and "srun not found" in done.stderr
  assert sorted(path.name for path in tmp_path.iterdir()) == ["bin"]


def test_slurm_submits_the_file_it_printed(tmp_path):
  args = [*SLURM, "--requeue", "--sbatch-file=job.sbatch", *OVERRIDES]
  printed = _sbatch_file(_run("slurm.sh", ["--dry-run", *args], tmp_path).stdout)
  done = _run("slurm.sh", args, tmp_path, fakes={"sbatch": 'echo "Submitted batch job 7"'})
  assert done.returncode == 0, done.stderr
  assert (tmp_path / "job.sbatch").read_text().splitlines() == printed
  assert _calls(tmp_path) == [["sbatch", "job.sbatch"]]


def _batch_job(tmp_path, srun_body, restart_count="0", terminate=False):
  """Runs the generated batch script (with --requeue) as SLURM would start it, with stand-in srun
  and scontrol, in a folder of its own under tmp_path; returns (exit status, calls)."""
  tmp_path = tmp_path / f"job{len(list(tmp_path.glob('job*')))}"
  tmp_path.mkdir()
  script = _sbatch_file(_run("slurm.sh", ["--dry-run", *SLURM, "--requeue", "--max-restarts=3"],
                             tmp_path).stdout)
  (tmp_path / "job.sbatch").write_text("\n".join(script) + "\n")
  env = {"PATH": str(_bin(tmp_path, ["sleep", "touch"], {"srun": srun_body, "scontrol": "exit 0"})),
         "LAUNCH_LOG": str(tmp_path / "calls.log"), "SLURM_JOB_ID": "54321",
         "SLURM_RESTART_COUNT": restart_count, "HOME": str(tmp_path)}
  job = subprocess.Popen([BASH, str(tmp_path / "job.sbatch")], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if terminate:  # preemption: SIGTERM to the batch shell while the tasks still run
    deadline = time.time() + 30
    while not (tmp_path / "started").exists() and time.time() < deadline:
      time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
  job.communicate(timeout=60)
  return job.returncode, _calls(tmp_path)


def test_batch_script_requeues_after_jaxat_checkpointed_on_sigterm(tmp_path):
  status, calls = _batch_job(tmp_path, 'echo "port=$JAXAT_COORDINATOR_PORT" >> "$LAUNCH_LOG"; exit 143')
  assert status == 143
  assert calls[0] == EXPECTED_SRUN[:5] + EXPECTED_SRUN[5:10]  # no overrides in this job
  assert calls[1] == [f"port={12345 + 54321 % 20000}"] and calls[2] == ["scontrol", "requeue", "54321"]


def test_batch_script_does_not_requeue_a_finished_or_failed_run(tmp_path):
  assert _batch_job(tmp_path, "exit 0")[0] == 0
  assert _batch_job(tmp_path, "exit 1")[0] == 1
  status, calls = _batch_job(tmp_path, "exit 143", restart_count="3")  # --max-restarts=3 reached
  assert status == 143 and not any(argv[0] == "scontrol" for argv in calls)


def test_batch_script_waits_for_the_tasks_when_it_is_signalled(tmp_path):
  """Preemption also signals the batch shell: it must wait for srun (jaxat saving) and then
  requeue, not die first."""
  status, calls = _batch_job(tmp_path, 'touch started; sleep 1; echo finished >> "$LAUNCH_LOG"; exit 143',
                             terminate=True)
  assert status == 143 and calls[-2:] == [["finished"], ["scontrol", "requeue", "54321"]]


# ----------------------------------------------------------------------------- both

@pytest.mark.parametrize("script", ["tpu_pod.sh", "slurm.sh"])
def test_scripts_parse_and_print_usage(tmp_path, script):
  assert subprocess.run([BASH, "-n", os.path.join(LAUNCH, script)]).returncode == 0
  done = _run(script, ["--help"], tmp_path)
  assert done.returncode == 0 and done.stdout.startswith(f"Usage: launch/{script}")
  with open(os.path.join(LAUNCH, script)) as source:
    assert "set -euo pipefail" in source.read()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck(tmp_path):
  script = _sbatch_file(_run("slurm.sh", ["--dry-run", *SLURM, "--requeue"], tmp_path).stdout)
  (tmp_path / "job.sbatch").write_text("\n".join(script) + "\n")
  # -x follows the scripts' `source launch/common.sh` (path relative to the repository root).
  done = subprocess.run(["shellcheck", "-x", os.path.join(LAUNCH, "tpu_pod.sh"), os.path.join(LAUNCH, "slurm.sh"),
                         os.path.join(LAUNCH, "common.sh"), str(tmp_path / "job.sbatch")],
                        capture_output=True, text=True, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stdout


PARSE = """
import json, os, sys
from absl import flags
from jaxat import main
from jaxat.cli_args import rewrite_fraction_overrides
from jaxat.config.validate import validate_config
from jaxat.train import distributed
flags.FLAGS(rewrite_fraction_overrides(["jaxat.main", *sys.argv[1:]]))
setup = distributed.resolve_setup(distributed.DistributedFlags(
    main._COORDINATOR.value, main._NUM_PROCESSES.value, main._PROCESS_ID.value,
    main._DISTRIBUTED_AUTO.value, main._HEARTBEAT_TIMEOUT.value), os.environ)
config = main._CONFIG.value
validate_config(config, 1)
print(json.dumps({"setup": list(setup), "workdir": main._WORKDIR.value, "eps": config.method.attack.eps,
                  "progress": config.log.progress, "dataset": config.dataset.name}))
"""


def _parsed_by_jaxat(argv, environ):
  """jaxat.main's own flags (absl + ml_collections config file, fraction overrides) parse the
  planned arguments, and the config passes validate_config; nothing is trained."""
  assert argv[1:3] == ["-m", "jaxat.main"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", **environ}
  env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
  done = subprocess.run([sys.executable, "-c", PARSE, *argv[3:]], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_planned_jaxat_commands_are_accepted_by_jaxat(tmp_path):
  overrides = [OVERRIDES[0], "--", OVERRIDES[1]]
  pod = _jaxat_argv_on_workers(_plan(_run("tpu_pod.sh", ["--dry-run", *POD, *overrides], tmp_path).stdout))
  parsed = _parsed_by_jaxat(pod, {})
  assert parsed["setup"] == [None, None, None, "auto", 100] and parsed["workdir"] == "/mnt/jaxat/runs/u"
  assert parsed["eps"] == pytest.approx(8 / 255) and parsed["progress"] == "none"
  assert parsed["dataset"] == "cifar10"
  srun = _srun_argv(_sbatch_file(_run("slurm.sh", ["--dry-run", *SLURM, *overrides], tmp_path).stdout))
  slurm_env = {"SLURM_NTASKS": "6", "SLURM_PROCID": "5", "SLURM_STEP_NODELIST": "gpu[07-09]",
               "JAXAT_COORDINATOR_PORT": "26666"}
  parsed = _parsed_by_jaxat(srun[srun.index("python"):], slurm_env)
  assert parsed["setup"] == ["gpu07:26666", 6, 5, "slurm", 100]
  assert parsed["eps"] == pytest.approx(8 / 255) and parsed["progress"] == "none"
