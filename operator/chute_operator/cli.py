"""The ``chute-operator`` command: one entry point, each subcommand imported only when used."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _run(args: argparse.Namespace) -> int:
    from chute_operator.run import run_operator

    return run_operator(
        namespaces=args.namespace, all_namespaces=args.all_namespaces, gpu_catalog=args.gpu_catalog
    )


def _render(args: argparse.Namespace) -> int:
    from chute_operator.render_cli import render_command

    return render_command(
        args.filename,
        sidecar_image=args.sidecar_image,
        catalog=args.gpu_catalog,
        gpu_profile=args.gpu_profile,
    )


def _explain(args: argparse.Namespace) -> int:
    if args.plan:
        if not (args.kubeconfig or args.cluster) or args.filename:
            print("chute-operator explain --plan needs --cluster or --kubeconfig, and no -f", file=sys.stderr)
            return 2
        from chute_operator.explain_plan import plan_command

        return plan_command(args.plan, args.kubeconfig, catalog=args.gpu_catalog)
    if not args.filename:
        print("chute-operator explain: -f/--filename is required (or --plan NAMESPACE/NAME)", file=sys.stderr)
        return 2
    from chute_operator.explain_cli import explain_command

    return explain_command(
        args.filename,
        catalog=args.gpu_catalog,
        kubeconfig=args.kubeconfig,
        cluster=args.cluster,
        gpu_profile=args.gpu_profile,
    )


def _crd(args: argparse.Namespace) -> int:
    from chute_operator.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


LOCAL_CLUSTER_MISSING = (
    "chute-operator {command}: the local cluster (the chute_devcluster package) is not installed here; "
    "it is a development tool that the image leaves out: run it from a checkout (scripts/demo)"
)


def _local_cluster_missing(command: str) -> int:
    print(LOCAL_CLUSTER_MISSING.format(command=command), file=sys.stderr)
    return 2


def _dev(args: argparse.Namespace) -> int:
    try:
        from chute_devcluster.cli import dev_command
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "chute_devcluster":
            raise
        return _local_cluster_missing("dev")
    return dev_command(
        args.action, pod_cidr=args.pod_cidr, service_cidr=args.service_cidr, real_node=args.real_node
    )


def _demo(argv: Sequence[str]) -> int:
    """The demo reads its own flags (``chute_devcluster.demo.main``)."""
    try:
        from chute_devcluster.demo import main as demo_main
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "chute_devcluster":
            raise
        return _local_cluster_missing("demo")
    return demo_main(list(argv))


def _sidecar(argv: Sequence[str]) -> int:
    from chute_sidecar.main import main as sidecar_main

    return sidecar_main(list(argv))


def _modelsim(argv: Sequence[str]) -> int:
    from chute_modelsim.main import main as modelsim_main

    return modelsim_main(list(argv))


def _activator(argv: Sequence[str]) -> int:
    from chute_activator.main import main as activator_main

    return activator_main(list(argv))


def build_parser() -> argparse.ArgumentParser:
    from chute_operator.version import IMAGE, VERSION

    parser = argparse.ArgumentParser(prog="chute-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chute-operator {VERSION} ({IMAGE})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the operator against the current kubeconfig or in-cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeat)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument(
        "--gpu-catalog",
        default=None,
        help="YAML file extending the built-in GPU catalog (default: CHUTE_OPERATOR_GPU_CATALOG)",
    )
    run.set_defaults(handler=_run)

    render = commands.add_parser("render", help="print the Kubernetes objects a Chute becomes")
    render.add_argument(
        "-f", "--filename", required=True, help="a Chute YAML file, a directory, or - (stdin)"
    )
    render.add_argument("--sidecar-image", default=None, help="image of the injected sidecar")
    render.add_argument("--gpu-catalog", default=None, help="YAML file overriding the built-in GPU catalog")
    render.add_argument(
        "--gpu-profile",
        default=None,
        metavar="NAME",
        help="the platform's GPU node labels and taints: gfd (default), gke, eks, eks-auto, eks-nodegroup, "
        "aks, custom (from --gpu-catalog)",
    )
    render.set_defaults(handler=_render)

    explain = commands.add_parser(
        "explain",
        help="which GPU types a Chute may use, (with a cluster) which nodes could take it, or (--plan) "
        "what the operator would do to a live Chute",
    )
    explain.add_argument("-f", "--filename", default=None, help="a Chute YAML file, a directory, or -")
    explain.add_argument(
        "--plan",
        metavar="NAMESPACE/NAME",
        default=None,
        help="what the operator would write to this live Chute now, and the status it expects "
        "(reads the cluster, writes nothing; needs --cluster or --kubeconfig)",
    )
    explain.add_argument("--gpu-catalog", default=None, help="YAML file overriding the built-in GPU catalog")
    explain.add_argument(
        "--gpu-profile",
        default=None,
        metavar="NAME",
        help="the platform's GPU node labels and taints: gfd, gke, eks, eks-auto, eks-nodegroup, aks, "
        "custom; default: gfd offline, picked from the nodes with a cluster (auto)",
    )
    where = explain.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", default=None, help="also check this cluster's nodes")
    where.add_argument(
        "--cluster", action="store_true", help="also check the nodes of the current kubeconfig's cluster"
    )
    explain.set_defaults(handler=_explain)

    crd = commands.add_parser("crd", help="print the Chute CustomResourceDefinition")
    crd.set_defaults(handler=_crd)

    dev = commands.add_parser("dev", help="a local control plane with simulated GPU nodes")
    dev.add_argument("action", choices=["up", "down", "status", "build", "images", "gateway-crds"])
    dev.add_argument("--pod-cidr", default=None, help="up: the pod range (default 10.244.0.0/16)")
    dev.add_argument("--service-cidr", default=None, help="up: the Service range (default 10.96.0.0/16)")
    dev.add_argument(
        "--no-real-node",
        dest="real_node",
        action="store_false",
        help="up: simulated nodes only (no kubelet, containerd or kube-proxy on this machine)",
    )
    dev.set_defaults(handler=_dev)

    commands.add_parser(
        "demo",
        help="local cluster, the chart in pods, the examples, then a real Chute's answers, scale-up, zero "
        "and wake (see: chute-operator demo --help)",
        add_help=False,
    )

    commands.add_parser(
        "sidecar", help="run the sidecar (see: chute-operator sidecar --help)", add_help=False
    )
    commands.add_parser(
        "modelsim",
        help="a simulated OpenAI-compatible model server (see: chute-operator modelsim --help)",
        add_help=False,
    )
    commands.add_parser(
        "activator",
        help="hold requests for Chutes scaled to zero and wake them (see: chute-operator activator --help)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sidecar"]:
        return _sidecar(argv[1:])
    if argv[:1] == ["modelsim"]:
        return _modelsim(argv[1:])
    if argv[:1] == ["activator"]:
        return _activator(argv[1:])
    if argv[:1] == ["demo"]:
        return _demo(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
