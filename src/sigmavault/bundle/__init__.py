"""Bundles: a vault (or some of its collections) as one verifiable directory or tar file.

>>> import sigmavault as sv
>>> report = sv.bundle.export("./memory", "./memory-2024-06.tar")
>>> sv.bundle.verify("./memory-2024-06.tar")          # raises sv.BundleInvalid on any mismatch
>>> sv.bundle.import_bundle("./memory-2024-06.tar", "./replica")
>>> sv.bundle.refresh("./replica", "./memory-2024-07.tar")   # up_to_date / invalidated / missing
"""

from sigmavault.bundle.api import BundleReport, RefreshReport, export, import_bundle, refresh, verify
from sigmavault.bundle.manifest import FORMAT, FORMAT_VERSION

__all__ = ["FORMAT", "FORMAT_VERSION", "BundleReport", "RefreshReport", "export", "import_bundle", "refresh", "verify"]
