from tests.operator_fixtures import chute_crd, operator

__all__ = ["chute_crd", "operator"]
