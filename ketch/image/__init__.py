"""ketch.image."""
