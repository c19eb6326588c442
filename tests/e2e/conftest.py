from tests.gitops.kstatus import kstatus_binary
from tests.operator_fixtures import chute_crd, operator, session_operator_paused

__all__ = ["chute_crd", "kstatus_binary", "operator", "session_operator_paused"]
