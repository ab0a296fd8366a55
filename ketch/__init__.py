"""ketch: OCI images as containers or as micro-VMs, driven like Docker."""

__version__ = "0.1.0"
