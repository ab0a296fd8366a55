"""ketch.registry."""
