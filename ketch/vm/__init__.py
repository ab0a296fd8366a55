"""ketch.vm."""
