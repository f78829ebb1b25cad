"""Application packages: loading and validating CWL (OGC 20-089), deriving OGC process descriptions, and turning
execute requests into cwltool job orders."""

from ades.cwl.describe import describe
from ades.cwl.inputs import InputError, to_job_order, wpst_inputs_to_map
from ades.cwl.package import HIDDEN_INPUTS, Package, PackageError, Param, load_package

__all__ = [
    "HIDDEN_INPUTS",
    "InputError",
    "Package",
    "PackageError",
    "Param",
    "describe",
    "load_package",
    "to_job_order",
    "wpst_inputs_to_map",
]
