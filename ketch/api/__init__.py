"""ketch.api."""
