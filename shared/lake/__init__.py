"""The lakehouse tables: table specs (schema, merge key, partition, write mode), the staging
table rows wait in, the one Delta writer and the one reader, the flush that MERGEs staged rows
exactly once per key, and compaction.

May import: ``shared.state`` and the top of ``shared``. Domains declare their own table specs
with :class:`shared.lake.tables.TableSpec`; this package knows no domain.
"""
