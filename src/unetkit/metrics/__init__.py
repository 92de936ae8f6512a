"""Metrics, numpy only: ISBI 2012 errors, Rand/VI, topology, instance matching, the evaluate job."""
