"""Local control plane for tests, benchmarks and the demo: etcd, kube-apiserver, kwok GPU nodes."""
