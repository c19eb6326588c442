"""kube-network-policies' source as the real node builds it: the release, with two changes for this machine.

``sigs.k8s.io/kube-network-policies`` v0.8.0 (the NetworkPolicy enforcer kind runs) is built from the
Go module proxy's copy of its module (``cmd/main.go``, the standard binary), changed in two places,
each checked to apply exactly so that a new release that moves them fails the build instead of
building something else:

1. ``--kubeconfig``: the release reads only the in-cluster configuration (a service account's token
   at a fixed path, for its DaemonSet); the real node runs it as a host process, like kube-proxy, with
   a kubeconfig of its own. An empty ``--kubeconfig`` still means in-cluster.
2. Its nftables rules hand new connections to user space with the ``queue`` statement, which needs the
   kernel's ``nft_queue`` (``CONFIG_NFT_QUEUE``); kernels without it (this project's machines) refuse
   the whole table, and nothing would be enforced. The same rules use the x_tables ``NFQUEUE`` target
   through ``nft_compat`` instead (what iptables-nft's ``-j NFQUEUE`` loads): same queue, same flags,
   same verdicts.
"""

from __future__ import annotations

from pathlib import Path

MODULE = "sigs.k8s.io/kube-network-policies"
VERSION = "v0.8.0"

XT_QUEUE_GO = """package networkpolicy

// Added by chute-operator's build: the NFQUEUE x_tables target (revision 3) through nft_compat, for
// kernels without nft_queue. struct xt_NFQ_info_v3 {u16 queuenum; u16 queues_total; u16 flags}, aligned.

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

func xtQueue(num uint16, bypass bool) expr.Any {
	info := make([]byte, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], 1) // NFQ_FLAG_BYPASS
	}
	payload := xt.Unknown(info)
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &payload}
}
"""

PATCHES: dict[str, tuple[tuple[str, str, int], ...]] = {
    "cmd/main.go": (
        ('"k8s.io/client-go/rest"', '"k8s.io/client-go/tools/clientcmd"', 1),
        ("rest.InClusterConfig()", 'clientcmd.BuildConfigFromFlags("", kubeconfig)', 1),
        (
            "\tdisableNRI                 bool\n",
            "\tdisableNRI                 bool\n\tkubeconfig                 string\n",
            1,
        ),
        (
            "func init() {\n",
            'func init() {\n\tflag.StringVar(&kubeconfig, "kubeconfig", "", '
            '"Path to a kubeconfig; empty: the in-cluster configuration")\n',
            1,
        ),
    ),
    "pkg/networkpolicy/controller.go": (
        (
            "queue := &expr.Queue{Num: uint16(c.config.QueueID)}\n"
            "\tif c.config.FailOpen {\n\t\tqueue.Flag = expr.QueueFlagBypass\n\t}",
            "queue := xtQueue(uint16(c.config.QueueID), c.config.FailOpen)",
            2,
        ),
    ),
}
"""File -> (text, replacement, how many times the text must occur)."""


class PatchError(RuntimeError):
    """The release's source is not what the patches expect."""


def patch_source(root: Path) -> None:
    """Apply :data:`PATCHES` to the module's copy at ``root`` and add ``xtqueue.go``."""
    for name, edits in PATCHES.items():
        path = root / name
        text = path.read_text()
        for old, new, count in edits:
            found = text.count(old)
            if found != count:
                raise PatchError(f"{MODULE}@{VERSION} {name}: expected {count} of {old!r}, found {found}")
            text = text.replace(old, new)
        path.write_text(text)
    (root / "pkg" / "networkpolicy" / "xtqueue.go").write_text(XT_QUEUE_GO)
