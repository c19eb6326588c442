from tests.gitops.kstatus import kstatus_binary
from tests.operator_fixtures import chute_crd, operator

__all__ = ["chute_crd", "kstatus_binary", "operator"]
