"""ketch.oci."""
