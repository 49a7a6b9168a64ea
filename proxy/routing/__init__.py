"""Which adapter serves which model name: the table built from config, catalog and providers."""

from proxy.routing.build import build_models, check_raw, plan_models
from proxy.routing.table import ModelTable, ServedModel

__all__ = ["ModelTable", "ServedModel", "build_models", "check_raw", "plan_models"]
