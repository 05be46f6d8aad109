"""Load generation against a running system: the workload clients and ``make demo``."""
