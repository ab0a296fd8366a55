"""ketch.runtime.cgroups."""
