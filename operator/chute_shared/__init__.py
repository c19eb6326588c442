"""What the programs share: the names they use on the wire and in the cluster, and one way to start.

Like Knative serving's ``pkg/network``: every port, path, header, label, annotation and reason that
more than one program (the operator, the sidecar, the activator, the simulated model server) reads
or writes is spelled here once, and each program imports it from here (a test fails if a program
spells one itself). Beside them, the one way the data-plane programs read their flags and
environment and the one JSON log format they write. This package imports nothing of the project
and nothing outside the standard library.
"""
