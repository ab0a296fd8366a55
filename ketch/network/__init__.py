"""ketch.network."""
