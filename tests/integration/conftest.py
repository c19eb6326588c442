from tests.operator_fixtures import chute_crd

__all__ = ["chute_crd"]
