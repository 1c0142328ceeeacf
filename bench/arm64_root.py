"""The arm64 root of ``bench/arm64_node.py``: an arm64 Debian bookworm built with
``debootstrap`` under ``qemu-user-static`` (binfmt_misc), cached under
``~/.cache/coopflower/arm64-root``, and coopflower's node side in a venv there (``/opt/node``:
Debian's Python 3.11, ``edge/requirements.txt`` and the breastcancer app's scikit-learn as
aarch64 cp311 wheels that pip downloads on the host and installs offline under emulation, and
torch: from PyTorch's CPU wheel index as ``edge/install.sh`` takes it on a Pi, or where that
index is unreachable Debian's own CPU build, ``python3-torch`` 1.13.1).

PyPI's aarch64 torch 2.13.0 is not an option: it is the CUDA build (427 MB wheel,
``2.13.0+cu130``) and without its NVIDIA packages (4.9 GB) ``import torch`` fails with
``ValueError: libcublasLt.so.*[0-9] not found in the system path`` (measured in this root).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("COOPFLOWER_ARM64_CACHE", Path.home() / ".cache" / "coopflower"))
VENV_BIN = Path(sys.executable).parent
NODE_VENV = "/opt/node"  # inside the root
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBS = "python3,python3-venv,python3-pip,ca-certificates"
APP_EXTRA = ["scikit-learn"]  # the breastcancer app's own node dependency
PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_SPEC = "torch==2.13.0"

class Arm64LabError(RuntimeError):
    """The emulated arm64 lab could not be set up or run."""


def say(msg: str) -> None:
    print(f"[arm64] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], timeout: float = 3600, **kw: Any) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if run.returncode != 0:
        raise Arm64LabError(f"{' '.join(cmd[:6])} ... exited {run.returncode}:\n"
                            f"{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return run


def nice(cmd: list[str]) -> list[str]:
    return ["nice", "-n", "10", *cmd]


# ---------------------------------------------------------------- emulation and the root

def ensure_emulation() -> None:
    """debootstrap and qemu-user-static installed, binfmt_misc mounted, qemu-aarch64 on."""
    if not (shutil.which("debootstrap") and shutil.which("qemu-aarch64-static")):
        say("apt-get install debootstrap qemu-user-static binfmt-support")
        sh(["apt-get", "update", "-qq"])
        sh(["apt-get", "install", "-y", "-qq", "debootstrap", "qemu-user-static",
            "binfmt-support"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        sh(["mount", "binfmt_misc", "-t", "binfmt_misc", str(binfmt)])
    if not (binfmt / "qemu-aarch64").exists():
        sh(["update-binfmts", "--enable", "qemu-aarch64"])
    if "enabled" not in (binfmt / "qemu-aarch64").read_text():
        raise Arm64LabError("binfmt_misc's qemu-aarch64 entry is registered but disabled")


def build_root(root: Path, rebuild: bool) -> float:
    """debootstrap an arm64 bookworm into ``root`` unless a finished one is there."""
    done = root / ".coopflower-root"
    if done.exists() and not rebuild:
        say(f"root: cached at {root}")
        return 0.0
    partial = root.with_name(root.name + ".partial")
    for old in (partial, root):
        if old.exists():
            shutil.rmtree(old)
    say(f"root: debootstrap --arch=arm64 {SUITE} (qemu-user emulation, ~2.5 min)")
    t = time.perf_counter()
    sh(nice(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={DEBS}",
             SUITE, str(partial), MIRROR]))
    sh(["chroot", str(partial), "/usr/bin/python3", "-c", "import platform; "
        "assert platform.machine() == 'aarch64', platform.machine()"])
    (partial / ".coopflower-root").write_text(f"{SUITE} arm64 {MIRROR}\n")
    partial.rename(root)
    return time.perf_counter() - t


@contextmanager
def mounted(root: Path, *binds: Path) -> Iterator[None]:
    """/proc, /dev, /dev/shm (and each of ``binds`` at its own path) inside ``root``."""
    done: list[Path] = []
    try:
        for src, opts in ((Path("/proc"), ["-t", "proc", "proc"]), (Path("/dev"), None),
                          (Path("/dev/shm"), None), *((b, None) for b in binds)):
            dst = root / str(src).lstrip("/")
            dst.mkdir(parents=True, exist_ok=True)
            sh(["mount", *(opts or ["--bind", str(src)]), str(dst)])
            done.append(dst)
        yield
    finally:
        for dst in reversed(done):
            subprocess.run(["umount", "-l", str(dst)], capture_output=True)


def chroot_env(extra: dict[str, str] | None = None) -> list[str]:
    env = {"PATH": f"{NODE_VENV}/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "FLWR_TELEMETRY_ENABLED": "0", **(extra or {})}
    return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]


# ---------------------------------------------------------------- the node side

def node_requirements(torch: str) -> list[str]:
    reqs = [ln.split("#")[0].strip() for ln in
            (REPO / "edge" / "requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r] + APP_EXTRA
    if torch == "debian":  # Debian's torch 1.13 is built against numpy 1.x
        reqs = [r for r in reqs if not r.startswith("numpy")] + ["numpy>=1.26,<2"]
    return reqs


def _pip_download(dest: Path, *args: str, timeout: float = 3600) -> None:
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    sh(nice([str(VENV_BIN / "pip"), "download", "-q", *plat, "--python-version", "3.11",
             "--only-binary=:all:", "-d", str(dest), *args]), timeout=timeout)


def resolve_torch(choice: str, root: Path) -> str:
    """``auto``: the mode the cached venv was built with, else ``cpu-index`` when PyTorch's
    CPU wheel index serves an aarch64 ``TORCH_SPEC`` here, else ``debian``."""
    stamp = root / "opt" / ".coopflower-node"
    if choice != "auto":
        return choice
    if stamp.exists():
        return json.loads(stamp.read_text())["torch"]
    try:
        _pip_download(CACHE / "arm64-torch-cpu", "--no-deps", "--index-url", CPU_INDEX,
                      TORCH_SPEC, timeout=900)
        return "cpu-index"
    except Arm64LabError as exc:
        say(f"PyTorch's CPU wheel index is not reachable here ({_last_error(exc)}): "
            "Debian's python3-torch instead")
        return "debian"


def _last_error(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\[Errno [^\]]+\][^'\")]*", text) or re.search(r"ERROR: [^\n]*", text)
    return m.group(0).strip() if m else text[-160:]


def download_wheels(dest: Path, reqs: list[str], torch: str) -> None:
    """aarch64 cp311 wheels of ``reqs`` (and of torch from PyTorch's CPU index) into dest."""
    _pip_download(dest, *reqs)
    if torch == "cpu-index":
        _pip_download(dest, "--no-deps", "--index-url", CPU_INDEX, TORCH_SPEC, timeout=900)
        _pip_download(dest, "sympy", "networkx", "jinja2", "fsspec", "filelock",
                      "typing-extensions", "setuptools")


def install_node(root: Path, torch: str, rebuild: bool) -> tuple[dict[str, float],
                                                                dict[str, float]]:
    """The node venv in the root, cached by what it was built from; a changed requirement
    reinstalls only what changed. Returns (seconds per step, sizes in MB)."""
    reqs = node_requirements(torch)
    key = hashlib.sha256(json.dumps([reqs, torch]).encode()).hexdigest()[:16]
    stamp = root / "opt" / ".coopflower-node"
    wheels = CACHE / f"arm64-wheels-{key}"
    built = json.loads(stamp.read_text()) if stamp.exists() and not rebuild else {}
    if built.get("key") == key:
        say(f"node venv: cached ({NODE_VENV}, {key})")
        return {}, sizes(root, wheels)
    steps: dict[str, float] = {}
    t = time.perf_counter()
    say(f"node venv: pip download aarch64 wheels on the host into {wheels}")
    download_wheels(wheels, reqs, torch)
    steps["download_wheels_s"] = round(time.perf_counter() - t, 1)
    if torch == "debian":
        t = time.perf_counter()
        _apt_torch(root)
        steps["apt_python3_torch_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    _venv(root, wheels, [*reqs, *([TORCH_SPEC] if torch == "cpu-index" else [])],
          clear=built.get("torch") != torch, system_site=torch == "debian")
    steps["venv_pip_install_s"] = round(time.perf_counter() - t, 1)
    stamp.write_text(json.dumps({"key": key, "torch": torch}))
    return steps, sizes(root, wheels)


def _apt_torch(root: Path) -> None:
    """Debian's CPU build of torch (python3-torch 1.13.1) in the root, unless it is there."""
    chroot = ["chroot", str(root), *chroot_env({"DEBIAN_FRONTEND": "noninteractive"})]
    have = subprocess.run([*chroot, "dpkg", "-s", "python3-torch"], capture_output=True)
    if have.returncode == 0:
        say("node venv: python3-torch already in the root")
        return
    say("node venv: apt-get install python3-torch (Debian's CPU build) in the root")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    sh(nice([*chroot, "apt-get", "update", "-qq"]))
    sh(nice([*chroot, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
             "python3-torch"]))


def _venv(root: Path, wheels: Path, pkgs: list[str], clear: bool, system_site: bool) -> None:
    """``pkgs`` into the node venv from ``wheels`` alone (pip install --no-index) under
    emulation; a +cpu local version of torch satisfies ``==2.13.0``."""
    say("node venv: python3 -m venv + pip install --no-index under emulation")
    inside = root / "opt" / "wheels"
    if inside.exists():
        shutil.rmtree(inside)
    shutil.copytree(wheels, inside)
    if clear or not (root / NODE_VENV[1:] / "bin" / "python").exists():
        venv = ["python3", "-m", "venv", "--clear", *(["--system-site-packages"]
                                                      if system_site else [])]
        sh(nice(["chroot", str(root), *chroot_env(), *venv, NODE_VENV]))
    sh(nice(["chroot", str(root), *chroot_env(), f"{NODE_VENV}/bin/pip", "install", "-q",
             "--no-index", "--find-links", "/opt/wheels", *pkgs]))
    shutil.rmtree(inside)


def sizes(root: Path, wheels: Path) -> dict[str, float]:
    def mb(p: Path) -> float:
        out = subprocess.run(["du", "-sm", str(p)], capture_output=True, text=True).stdout
        return float(out.split()[0]) if out else 0.0
    return {"wheels_downloaded_mb": mb(wheels), "node_venv_mb": mb(root / NODE_VENV[1:]),
            "root_mb": mb(root)}


def sync_coopflower(root: Path) -> None:
    """This checkout's coopflower package into the root, on the node venv's path."""
    dst = root / "opt" / "coopflower-src"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(REPO / "coopflower", dst / "coopflower",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = next((root / NODE_VENV[1:] / "lib").glob("python3*/site-packages"))
    (site / "coopflower-src.pth").write_text("/opt/coopflower-src\n")

