"""ketch.snapshot."""
