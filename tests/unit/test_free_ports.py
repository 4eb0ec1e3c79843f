"""Ports for embedded servers chosen by several processes at once (one test stack per pytest-xdist
worker) never collide: each process sees what the others chose in the last two minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PICK = "from trackd_platform.processes import free_ports; print(*free_ports(120))"


def test_processes_picking_ports_at_once_never_choose_the_same(tmp_path: Path) -> None:
    # 4 × 120 ports out of ~12,700: without the shared claims, about ten would be chosen twice
    env = {"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    pickers = [subprocess.Popen([sys.executable, "-c", PICK], env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(4)]
    chosen = [[int(p) for p in picker.communicate(timeout=60)[0].split()] for picker in pickers]
    assert [len(ports) for ports in chosen] == [120] * 4
    every = [port for ports in chosen for port in ports]
    taken = every + [port + 10_000 for port in every]  # SeaweedFS's gRPC neighbours too
    assert len(set(taken)) == len(taken)
    claims = (tmp_path / next(p.name for p in tmp_path.iterdir())).read_text().split("\n")
    assert len([line for line in claims if line]) == len(taken)
