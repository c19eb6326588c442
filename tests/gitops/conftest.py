from tests.gitops.kstatus import kstatus_binary

__all__ = ["kstatus_binary"]
