"""The detached process behind ``chute-operator dev up``: runs a ControlPlane until SIGTERM.

    python -m chute_devcluster.supervisor --state-dir DIR [--nodes FILE]
        [--pod-cidr CIDR] [--service-cidr CIDR]
        [--real-node --sandbox-image REF=TAR [--image REF=TAR]...]

Writes ``DIR/supervisor.pid`` at once and ``DIR/state.json`` once the nodes are Ready (or with an
``error`` if the start failed). Stops everything on SIGTERM, SIGINT or SIGHUP, or when one of the
control plane's processes dies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from chute_devcluster.controlplane import (
    POD_CIDR,
    SERVICE_CLUSTER_IP_RANGE,
    ControlPlane,
    ControlPlaneError,
)
from chute_devcluster.nodes import load_node_pools
from chute_devcluster.realnode import NodeImage, NodeImages
from chute_devcluster.realnode_config import RealNodeSettings

PID_FILE = "supervisor.pid"
STATE_FILE = "state.json"


class _Stop(Exception):
    """Raised from a signal handler while the control plane is still starting."""


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    temporary = state_dir / (STATE_FILE + ".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(state_dir / STATE_FILE)


def read_state(state_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run(
    state_dir: Path,
    nodes_file: Path | None,
    pod_cidr: str = POD_CIDR,
    service_cidr: str = SERVICE_CLUSTER_IP_RANGE,
    real_node_images: NodeImages | None = None,
    real_node_lock_timeout: float = 0.0,
) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / PID_FILE).write_text(str(os.getpid()))
    stop_requested = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        if starting:
            raise _Stop(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    exit_code = 0
    try:
        pools = load_node_pools(nodes_file) if nodes_file else None
        control_plane = ControlPlane(
            work_dir=state_dir,
            node_pools=pools,
            kwok_log_level="WARN",
            pod_cidr=pod_cidr,
            service_cidr=service_cidr,
            real_node=RealNodeSettings.from_env() if real_node_images else None,
            real_node_images=real_node_images,
            real_node_lock_timeout=real_node_lock_timeout,
        )
    except ControlPlaneError as error:
        _log(f"start failed: {error}")
        write_state(state_dir, {"ready": False, "pid": os.getpid(), "error": str(error)})
        (state_dir / PID_FILE).unlink(missing_ok=True)
        return 1
    try:
        _log(f"starting the control plane in {state_dir}")
        control_plane.start()
        starting = False
        write_state(
            state_dir,
            {
                "ready": True,
                "pid": os.getpid(),
                "server": control_plane.server,
                "kubeconfig": str(control_plane.kubeconfig),
                "components": control_plane.pids(),
                "nodes": control_plane.node_names(),
                "pod_cidr": control_plane.pod_cidr,
                "service_cidr": control_plane.service_cidr,
                "startup_seconds": round(control_plane.startup_seconds, 2),
                "milestones": control_plane.milestones,
                "real_node": _real_node_state(control_plane),
            },
        )
        _log(f"ready in {control_plane.startup_seconds:.1f}s at {control_plane.server}")
        while not stop_requested.wait(1.0):
            if not control_plane.running():
                _log("a control plane process exited:\n" + control_plane.logs_summary())
                exit_code = 1
                break
    except _Stop as stop:
        _log(f"{stop} while starting")
    except ControlPlaneError as error:
        _log(f"start failed: {error}")
        write_state(state_dir, {"ready": False, "pid": os.getpid(), "error": str(error)})
        exit_code = 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        _log("stopping")
        control_plane.stop()
        if exit_code == 0:
            (state_dir / STATE_FILE).unlink(missing_ok=True)
        (state_dir / PID_FILE).unlink(missing_ok=True)
        _log("stopped")
    return exit_code


def _real_node_state(control_plane: ControlPlane) -> dict[str, Any] | None:
    node = control_plane.real_node
    if node is None:
        return None
    return {
        "name": node.name,
        "pod_subnet": node.settings.pod_subnet,
        "gpu": f"{node.settings.gpu.count}x {node.settings.gpu.product}",
        "images": [image.ref for image in (node.sandbox_image, *node.images)],
        "registry": node.registry,
    }


def _image(argument: str) -> NodeImage:
    ref, separator, archive = argument.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected REF=ARCHIVE: {argument}")
    return NodeImage(ref, Path(archive))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--nodes", type=Path, default=None, help="node pool YAML file")
    parser.add_argument("--pod-cidr", default=POD_CIDR, help="the cluster's pod range")
    parser.add_argument("--service-cidr", default=SERVICE_CLUSTER_IP_RANGE, help="the Service range")
    parser.add_argument("--real-node", action="store_true", help="also run the real node")
    parser.add_argument("--sandbox-image", type=_image, help="REF=ARCHIVE of the pause image")
    parser.add_argument("--image", type=_image, action="append", default=[], help="REF=ARCHIVE to import")
    parser.add_argument(
        "--real-node-lock-timeout",
        type=float,
        default=0.0,
        help="seconds to wait for another cluster's real node",
    )
    args = parser.parse_args(argv)
    if args.real_node and args.sandbox_image is None:
        parser.error("--real-node needs --sandbox-image")
    images = NodeImages(args.sandbox_image, tuple(args.image)) if args.real_node else None
    return run(
        args.state_dir.resolve(),
        args.nodes,
        args.pod_cidr,
        args.service_cidr,
        images,
        args.real_node_lock_timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
