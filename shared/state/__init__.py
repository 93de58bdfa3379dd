"""The app's own state in the state account (the host storage account): the dedup latch, the
dead-letter records, the per-table blob leases, and the sharding of keys over Table partitions.

May import: the top of ``shared`` (config, errors, redact, ids, clock, pool, storage, durable). Nothing
else in ``shared``.
"""
